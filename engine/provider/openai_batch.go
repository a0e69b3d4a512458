package provider

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// defaultBatchPoll is how often a batch's status is asked for once it has
// run a while: a batch takes minutes to hours, and each poll is one cheap
// request.
const defaultBatchPoll = 15 * time.Second

// maxBatchRequests is OpenAI's limit of requests per batch; a larger round
// is sent as several batches.
const maxBatchRequests = 50_000

// RunBatch sends reqs through OpenAI's Batch API with go-openai's batch
// support: the requests are uploaded as one JSONL file (purpose "batch"),
// a batch is created on /v1/chat/completions with the 24 h window, its
// status is polled, and the output and error files are downloaded and
// matched to the requests by custom_id. A cancelled ctx cancels the batch.
func (o *openaiClient) RunBatch(ctx context.Context, reqs []Request, progress func(BatchProgress)) ([]BatchResult, error) {
	out := make([]BatchResult, 0, len(reqs))
	for start := 0; start < len(reqs); start += maxBatchRequests {
		part, err := o.runBatch(ctx, reqs[start:min(start+maxBatchRequests, len(reqs))], progress)
		if err != nil {
			return nil, err
		}
		out = append(out, part...)
	}
	return out, nil
}

func (o *openaiClient) runBatch(ctx context.Context, reqs []Request, progress func(BatchProgress)) ([]BatchResult, error) {
	var upload openai.UploadBatchFileRequest
	upload.FileName = "fapo-batch.jsonl"
	models := make([]string, len(reqs))
	for i, req := range reqs {
		creq, err := o.chatRequest(req)
		if err != nil {
			return nil, err
		}
		models[i] = creq.Model
		upload.AddChatCompletion(strconv.Itoa(i), creq)
	}
	what := fmt.Sprintf("%s %s batch", o.provider, o.model)
	file, err := o.c.UploadBatchFile(ctx, upload)
	if err != nil {
		return nil, o.batchErr(what+": upload the requests", err)
	}
	b, err := o.c.CreateBatch(ctx, openai.CreateBatchRequest{InputFileID: file.ID,
		Endpoint: openai.BatchEndpointChatCompletions, CompletionWindow: "24h"})
	if err != nil {
		return nil, o.batchErr(what+": create the batch", err)
	}
	maxPoll := o.batchPoll
	if maxPoll <= 0 {
		maxPoll = defaultBatchPoll
	}
	// The first polls come quickly (a small batch may be done in seconds),
	// then every maxPoll.
	poll := min(50*time.Millisecond, maxPoll)
	for {
		if progress != nil {
			progress(BatchProgress{ID: b.ID, Status: b.Status, Total: len(reqs),
				Completed: b.RequestCounts.Completed, Failed: b.RequestCounts.Failed})
		}
		switch b.Status {
		case "completed", "expired", "cancelled":
			// Expired and cancelled batches keep what they finished: those
			// answers are used, the rest fail as ErrBatchFailed.
			return o.batchResults(ctx, what, b.Batch, reqs, models)
		case "failed":
			return nil, fmt.Errorf("%s %s failed: %s: %w", what, b.ID, batchErrors(b.Batch), ErrBatchFailed)
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			// Best effort: a batch nobody will read should not be paid for.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_, _ = o.c.CancelBatch(cctx, b.ID)
			cancel()
			return nil, fmt.Errorf("%s %s: cancelled while waiting: %w", what, b.ID, context.Cause(ctx))
		case <-t.C:
		}
		poll = min(2*poll, maxPoll)
		if b, err = o.c.RetrieveBatch(ctx, b.ID); err != nil {
			return nil, o.batchErr(what+": poll the batch", err)
		}
	}
}

// batchErrors is the batch-level error list, clipped.
func batchErrors(b openai.Batch) string {
	if b.Errors == nil || len(b.Errors.Data) == 0 {
		return "no reason given"
	}
	var parts []string
	for _, e := range b.Errors.Data[:min(3, len(b.Errors.Data))] {
		parts = append(parts, strings.TrimSpace(e.Code+" "+e.Message))
	}
	s := strings.Join(parts, "; ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// batchLine is one line of a batch's output or error file.
type batchLine struct {
	CustomID string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (o *openaiClient) batchResults(ctx context.Context, what string, b openai.Batch, reqs []Request, models []string) ([]BatchResult, error) {
	results := make([]BatchResult, len(reqs))
	got := make([]bool, len(reqs))
	for _, id := range []*string{b.OutputFileID, b.ErrorFileID} {
		if id == nil || *id == "" {
			continue
		}
		raw, err := o.c.GetFileContent(ctx, *id)
		if err != nil {
			return nil, o.batchErr(what+" "+b.ID+": download the results", err)
		}
		err = readBatchLines(raw, func(l batchLine) {
			i, err := strconv.Atoi(l.CustomID)
			if err != nil || i < 0 || i >= len(reqs) || got[i] {
				return // not one of ours, or a repeat: the first answer stands
			}
			got[i] = true
			results[i] = o.batchResult(models[i], l)
		})
		_ = raw.Close()
		if err != nil {
			return nil, fmt.Errorf("%s %s: read the results: %w: %w", what, b.ID, err, ErrMalformedResponse)
		}
	}
	for i := range results {
		if !got[i] {
			results[i].Err = fmt.Errorf("%s %s ended %s without an answer to this request: %w", what, b.ID, b.Status, ErrBatchFailed)
		}
	}
	return results, nil
}

func readBatchLines(r io.Reader, fn func(batchLine)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var l batchLine
		if err := json.Unmarshal(line, &l); err != nil {
			return err
		}
		fn(l)
	}
	return sc.Err()
}

// batchResult maps one output line as Complete maps a live answer: a 2xx
// body is a chat completion, any other status an APIError (so a 429 or
// 5xx is an errored case and a 400 the variant's failure, as live), and a
// line-level error ErrBatchFailed.
func (o *openaiClient) batchResult(model string, l batchLine) BatchResult {
	switch {
	case l.Error != nil:
		return BatchResult{Err: fmt.Errorf("%s %s: batch request failed (%s): %w", o.provider, model, strings.TrimSpace(l.Error.Code), ErrBatchFailed)}
	case l.Response == nil:
		return BatchResult{Err: fmt.Errorf("%s %s: batch line without a response: %w", o.provider, model, ErrBatchFailed)}
	case l.Response.StatusCode >= 300:
		return BatchResult{Err: &APIError{Provider: o.provider, Model: model, Status: l.Response.StatusCode,
			Body: errorMessage(l.Response.Body), Hint: hintFor(l.Response.StatusCode, o.keyEnv)}}
	}
	var a wireAnswer
	if err := json.Unmarshal(l.Response.Body, &a); err != nil {
		return BatchResult{Err: fmt.Errorf("%s %s: %w: a batch answer is not a chat completion (%v)", o.provider, model, ErrMalformedResponse, err)}
	}
	resp, err := answerOf(o.provider, model, &a, 0)
	if err == nil && resp.FinishReason == "stop" && emptyAnswer(resp) {
		err = fmt.Errorf("%s: the batch answered with an empty completion (finish_reason stop): %w", model, ErrEmptyCompletion)
	}
	return BatchResult{Response: resp, Err: err}
}

// batchErr wraps a failed batch API call; an HTTP error keeps its status
// (go-openai's APIError) so that a 429 or 5xx is classified as the
// infrastructure.
func (o *openaiClient) batchErr(what string, err error) error {
	var api *openai.APIError
	var req *openai.RequestError
	status := 0
	switch {
	case errors.As(err, &api):
		status = api.HTTPStatusCode
	case errors.As(err, &req):
		status = req.HTTPStatusCode
	}
	if status != 0 {
		return fmt.Errorf("%s: %w", what, &APIError{Provider: o.provider, Model: o.model, Status: status,
			Body: err.Error(), Hint: hintFor(status, o.keyEnv)})
	}
	return fmt.Errorf("%s: %w", what, err)
}
