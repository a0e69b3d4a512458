package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sagemakerruntime"
	"github.com/aws/aws-sdk-go-v2/service/sagemakerruntime/types"
	"github.com/aws/smithy-go"
)

// AWSOptions override how a SageMaker client reaches AWS. The zero value
// uses the default credential chain and the regional endpoint; tests point
// EndpointURL at a fake and pass static credentials.
type AWSOptions struct {
	EndpointURL     string
	AccessKeyID     string
	SecretAccessKey string
}

// sagemakerClient invokes a SageMaker endpoint that serves an OpenAI-style
// messages API (the LMI and TGI containers do).
type sagemakerClient struct {
	model    string
	endpoint string
	rt       *sagemakerruntime.Client
}

func newSageMaker(spec Spec, opts Options) (*sagemakerClient, error) {
	if spec.Endpoint == "" {
		return nil, fmt.Errorf("sagemaker %s: endpoint is empty: set endpoint in the model block to the SageMaker endpoint name", spec.Name)
	}
	if spec.Region == "" {
		return nil, fmt.Errorf("sagemaker %s: region is empty: set region in the model block (e.g. \"us-east-1\")", spec.Name)
	}
	// The SDK's own retryer is switched off: retries belong to WithRetry, so
	// that one policy (and one Retry-After reading) governs every provider.
	loadOpts := []func(*config.LoadOptions) error{
		config.WithRegion(spec.Region),
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
	}
	// The SDK's own buildable client is kept unless the caller brings one,
	// because only it can apply AWS_CA_BUNDLE; it gets the same idle pool
	// as the OpenAI clients.
	if opts.HTTPClient != nil {
		loadOpts = append(loadOpts, config.WithHTTPClient(opts.HTTPClient))
	} else {
		loadOpts = append(loadOpts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns, t.MaxIdleConnsPerHost = 256, 128
		})))
	}
	if opts.AWS.AccessKeyID != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AWS.AccessKeyID, opts.AWS.SecretAccessKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(context.Background(), loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("sagemaker %s: loading AWS configuration: %w: check AWS_PROFILE and ~/.aws/config", spec.Name, err)
	}
	rt := sagemakerruntime.NewFromConfig(cfg, func(o *sagemakerruntime.Options) {
		if opts.AWS.EndpointURL != "" {
			o.BaseEndpoint = aws.String(opts.AWS.EndpointURL)
		}
	})
	return &sagemakerClient{model: spec.Name, endpoint: spec.Endpoint, rt: rt}, nil
}

// smPayload is the OpenAI-style messages body the container expects.
type smPayload struct {
	Model          string          `json:"model,omitempty"`
	Messages       []Message       `json:"messages"`
	MaxTokens      *int            `json:"max_tokens,omitempty"`
	Temperature    *float64        `json:"temperature,omitempty"`
	TopP           *float64        `json:"top_p,omitempty"`
	Seed           *int            `json:"seed,omitempty"`
	Stop           []string        `json:"stop,omitempty"`
	ResponseFormat json.RawMessage `json:"response_format,omitempty"`
	Tools          json.RawMessage `json:"tools,omitempty"`
}

func (s *sagemakerClient) payload(req Request) ([]byte, error) {
	p := smPayload{
		Model: req.Model, Messages: req.Messages,
		MaxTokens: req.Params.MaxTokens, Temperature: req.Params.Temperature, TopP: req.Params.TopP,
		Seed: req.Params.Seed, Stop: req.Params.Stop,
	}
	if len(req.JSONSchema) > 0 {
		rf, err := json.Marshal(map[string]any{"type": "json_schema",
			"json_schema": map[string]any{"name": "output", "schema": req.JSONSchema, "strict": true}})
		if err != nil {
			return nil, fmt.Errorf("sagemaker %s: json_schema is not valid JSON: fix the step's output schema: %w", req.Model, err)
		}
		p.ResponseFormat = rf
	}
	if len(req.Tools) > 0 {
		type fn struct {
			Name        string          `json:"name"`
			Description string          `json:"description,omitempty"`
			Parameters  json.RawMessage `json:"parameters,omitempty"`
		}
		type tool struct {
			Type     string `json:"type"`
			Function fn     `json:"function"`
		}
		ts := make([]tool, len(req.Tools))
		for i, t := range req.Tools {
			ts[i] = tool{Type: "function", Function: fn(t)}
		}
		raw, err := json.Marshal(ts)
		if err != nil {
			return nil, fmt.Errorf("sagemaker %s: a tool's parameters are not valid JSON: %w", req.Model, err)
		}
		p.Tools = raw
	}
	return json.Marshal(p)
}

func (s *sagemakerClient) Complete(ctx context.Context, req Request) (Response, error) {
	if req.Model == "" {
		req.Model = s.model
	}
	body, err := s.payload(req)
	if err != nil {
		return Response{}, err
	}
	start := time.Now()
	out, err := s.rt.InvokeEndpoint(ctx, &sagemakerruntime.InvokeEndpointInput{
		EndpointName: aws.String(s.endpoint),
		Body:         body,
		ContentType:  aws.String("application/json"),
		Accept:       aws.String("application/json"),
	})
	latency := time.Since(start)
	if err != nil {
		return Response{}, s.wrapErr(req.Model, err)
	}
	resp, err := parseSageMaker(out.Body)
	if err != nil {
		return Response{}, fmt.Errorf("sagemaker %s (endpoint %s): %w: %v", req.Model, s.endpoint, ErrMalformedResponse, err)
	}
	resp.Latency = latency
	return resp, nil
}

// wrapErr turns an SDK error into an APIError when the endpoint answered,
// so that retries see the status: a ModelError carries the container's own
// status, and a ThrottlingException is a 429 whatever its HTTP status.
func (s *sagemakerClient) wrapErr(model string, err error) error {
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		return fmt.Errorf("sagemaker %s (endpoint %s): %w", model, s.endpoint, err)
	}
	api := &APIError{Provider: "sagemaker", Model: model, Status: re.HTTPStatusCode(),
		Hint: hintFor(re.HTTPStatusCode(), "")}
	if re.Response != nil && re.Response.Response != nil {
		api.RetryAfter = parseRetryAfter(re.Response.Header, time.Now())
	}
	var me *types.ModelError
	var ae smithy.APIError
	switch {
	case errors.As(err, &me):
		if me.OriginalStatusCode != nil {
			api.Status = int(*me.OriginalStatusCode)
		}
		api.Body = aws.ToString(me.OriginalMessage)
		if api.Body == "" {
			api.Body = me.ErrorMessage()
		}
	case errors.As(err, &ae):
		if ae.ErrorCode() == "ThrottlingException" {
			api.Status = http.StatusTooManyRequests
		}
		api.Body = ae.ErrorMessage()
	}
	switch api.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		api.Hint = "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and their access to endpoint " + s.endpoint
	case http.StatusNotFound:
		api.Hint = "check endpoint " + s.endpoint + " and region"
	default:
		api.Hint = hintFor(api.Status, "")
	}
	return api
}

// parseSageMaker reads a chat completion (LMI, vLLM, TGI messages API) or
// the TGI generate shape [{"generated_text": ...}] / {"generated_text": ...}.
func parseSageMaker(body []byte) (Response, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return Response{}, errors.New("empty body")
	}
	if trimmed[0] == '[' {
		var gen []struct {
			GeneratedText *string `json:"generated_text"`
		}
		if err := json.Unmarshal(trimmed, &gen); err != nil {
			return Response{}, err
		}
		if len(gen) == 0 || gen[0].GeneratedText == nil {
			return Response{}, fmt.Errorf("expected [{\"generated_text\": ...}], got %s", excerpt(trimmed))
		}
		return Response{Content: *gen[0].GeneratedText, FinishReason: "stop"}, nil
	}
	var cc struct {
		wireAnswer
		GeneratedText *string `json:"generated_text"`
	}
	if err := json.Unmarshal(trimmed, &cc); err != nil {
		return Response{}, err
	}
	if cc.GeneratedText != nil {
		return Response{Content: *cc.GeneratedText, FinishReason: "stop"}, nil
	}
	if len(cc.Choices) == 0 {
		return Response{}, fmt.Errorf("expected a chat completion with choices or generated_text, got %s", excerpt(trimmed))
	}
	return cc.response(), nil
}

func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
