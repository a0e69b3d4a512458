package fakellm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// The TEST DOUBLE's batch API, shaped like OpenAI's: POST /v1/files
// (multipart, purpose "batch") stores a JSONL file of requests; POST
// /v1/batches creates a batch over it; GET /v1/batches/{id} reports its
// status and answers the next share of its lines (see WithBatchPolls);
// GET /v1/files/{id}/content downloads the output and error files; POST
// /v1/batches/{id}/cancel cancels it. Each line is answered by the same
// rules, default and faults as a chat completion, without latency; a
// status fault becomes a line of the error file with that status, any
// other fault a line-level error. Every batch, file and answer names the
// double (Fingerprint).

type batch struct {
	ID               string         `json:"id"`
	Object           string         `json:"object"`
	Endpoint         string         `json:"endpoint"`
	InputFileID      string         `json:"input_file_id"`
	CompletionWindow string         `json:"completion_window"`
	Status           string         `json:"status"`
	OutputFileID     *string        `json:"output_file_id"`
	ErrorFileID      *string        `json:"error_file_id"`
	CreatedAt        int64          `json:"created_at"`
	RequestCounts    requestCounts  `json:"request_counts"`
	Metadata         map[string]any `json:"metadata"`

	lines     [][]byte
	next      int
	out, errs bytes.Buffer
}

type requestCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// BatchLines is the number of batch requests the double has answered.
func (s *Server) BatchLines() int { return int(s.batchLines.Load()) }

// Batches is the number of batches created.
func (s *Server) Batches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.batches)
}

func (s *Server) uploadFile(w http.ResponseWriter, r *http.Request) {
	f, hdr, err := r.FormFile("file")
	if err != nil || r.FormValue("purpose") != "batch" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
			"message": Fingerprint + ": want a multipart upload with purpose=batch and a file", "type": "invalid_request_error"}})
		return
	}
	body, _ := io.ReadAll(f)
	s.mu.Lock()
	id := fmt.Sprintf("file-%s-%d", Fingerprint, len(s.files)+1)
	s.files[id] = body
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "file", "bytes": len(body), "created_at": time.Now().Unix(),
		"filename": hdr.Filename, "purpose": "batch", "status": "processed"})
}

func (s *Server) fileContent(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	body, ok := s.files[r.PathValue("id")]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"message": Fingerprint + ": no such file"}})
		return
	}
	w.Header().Set("Content-Type", "application/jsonl")
	_, _ = w.Write(body)
}

func (s *Server) createBatch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		InputFileID      string `json:"input_file_id"`
		Endpoint         string `json:"endpoint"`
		CompletionWindow string `json:"completion_window"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Endpoint != "/v1/chat/completions" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
			"message": Fingerprint + ": want input_file_id and endpoint /v1/chat/completions", "type": "invalid_request_error"}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	input, ok := s.files[req.InputFileID]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"message": Fingerprint + ": no such input file"}})
		return
	}
	b := &batch{ID: fmt.Sprintf("batch-%s-%d", Fingerprint, len(s.batches)+1), Object: "batch", Endpoint: req.Endpoint,
		InputFileID: req.InputFileID, CompletionWindow: req.CompletionWindow, Status: "validating",
		CreatedAt: time.Now().Unix(), Metadata: map[string]any{"served_by": Fingerprint}}
	sc := bufio.NewScanner(bytes.NewReader(input))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			b.lines = append(b.lines, bytes.Clone(line))
		}
	}
	b.RequestCounts.Total = len(b.lines)
	s.batches[b.ID] = b
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) retrieveBatch(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	b, ok := s.batches[r.PathValue("id")]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"message": Fingerprint + ": no such batch"}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch b.Status {
	case "validating":
		b.Status = "in_progress"
	case "in_progress":
		share := (len(b.lines) + s.batchPolls - 1) / s.batchPolls
		for end := min(b.next+share, len(b.lines)); b.next < end; b.next++ {
			s.answerLine(b, b.lines[b.next])
		}
		if b.next == len(b.lines) {
			s.finish(b, "completed")
		}
	}
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) cancelBatch(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.batches[r.PathValue("id")]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"message": Fingerprint + ": no such batch"}})
		return
	}
	if b.Status == "validating" || b.Status == "in_progress" {
		s.finish(b, "cancelled")
	}
	writeJSON(w, http.StatusOK, b)
}

// finish ends a batch with status, storing its output and error files.
// Called with s.mu held.
func (s *Server) finish(b *batch, status string) {
	b.Status = status
	if b.out.Len() > 0 {
		id := b.ID + "-output"
		s.files[id] = b.out.Bytes()
		b.OutputFileID = &id
	}
	if b.errs.Len() > 0 {
		id := b.ID + "-errors"
		s.files[id] = b.errs.Bytes()
		b.ErrorFileID = &id
	}
}

// answerLine answers one request line of b. Called with s.mu held.
func (s *Server) answerLine(b *batch, line []byte) {
	var in struct {
		CustomID string          `json:"custom_id"`
		Method   string          `json:"method"`
		URL      string          `json:"url"`
		Body     json.RawMessage `json:"body"`
	}
	var req Request
	s.batchLines.Add(1)
	n := s.batchLines.Load()
	if json.Unmarshal(line, &in) != nil || json.Unmarshal(in.Body, &req) != nil || in.Method != "POST" || !strings.HasSuffix(in.URL, "/chat/completions") {
		writeLine(&b.errs, map[string]any{"id": fmt.Sprintf("batch_req_%d", n), "custom_id": in.CustomID, "response": nil,
			"error": map[string]any{"code": "invalid_request", "message": Fingerprint + ": the line is not a chat completions request"}})
		b.RequestCounts.Failed++
		return
	}
	rep := s.plan(req)
	id := fmt.Sprintf("batch_req_%d", n)
	switch f := rep.Fault; f.Kind {
	case FaultNone:
		writeLine(&b.out, map[string]any{"id": id, "custom_id": in.CustomID, "error": nil,
			"response": map[string]any{"status_code": 200, "request_id": id, "body": completion(req, rep)}})
		b.RequestCounts.Completed++
	case FaultStatus:
		writeLine(&b.errs, map[string]any{"id": id, "custom_id": in.CustomID, "error": nil,
			"response": map[string]any{"status_code": f.Status, "request_id": id, "body": map[string]any{"error": map[string]any{
				"message": fmt.Sprintf("%s: injected %d %s", Fingerprint, f.Status, http.StatusText(f.Status)), "type": "fakellm_injected"}}}})
		b.RequestCounts.Failed++
	default:
		writeLine(&b.errs, map[string]any{"id": id, "custom_id": in.CustomID, "response": nil,
			"error": map[string]any{"code": "fakellm_injected", "message": Fingerprint + ": injected fault"}})
		b.RequestCounts.Failed++
	}
}

func writeLine(w *bytes.Buffer, v any) {
	b, _ := json.Marshal(v)
	w.Write(b)
	w.WriteByte('\n')
}

// BatchStatus is the status of batch id ("" when there is none).
func (s *Server) BatchStatus(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.batches[id]; ok {
		return b.Status
	}
	return ""
}
