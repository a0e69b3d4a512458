package toolset

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/fapo-dev/fapo/engine/provider"
)

type mcpConfig struct {
	name, remote string
	command      []string
	env          []string
	dir          string
	timeout      time.Duration
	desc         string
}

// mcpTool is one tool of an external MCP server. The server is started on
// first use and shared by every call; a failed start is remembered, so a
// broken server fails each case quickly and the same way.
type mcpTool struct {
	cfg mcpConfig
	set *Set

	once sync.Once
	c    *client.Client
	def  provider.ToolDef
	err  error
}

func newMCPTool(s *Set, cfg mcpConfig) *mcpTool { return &mcpTool{cfg: cfg, set: s} }

func (t *mcpTool) start() {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.timeout)
	defer cancel()
	dir := t.cfg.dir
	c, err := client.NewStdioMCPClientWithOptions(t.cfg.command[0], t.cfg.env, t.cfg.command[1:],
		transport.WithCommandFunc(func(_ context.Context, command string, env []string, args []string) (*exec.Cmd, error) {
			// Not tied to a context: the server outlives the call that started it.
			cmd := exec.Command(command, args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), env...)
			return cmd, nil
		}))
	if err != nil {
		t.err = fmt.Errorf("start MCP server %s: %w", strings.Join(t.cfg.command, " "), err)
		return
	}
	t.set.onClose(c.Close)
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "fapo", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.err = fmt.Errorf("initialize MCP server %s: %w", strings.Join(t.cfg.command, " "), err)
		return
	}
	list, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.err = fmt.Errorf("list the tools of MCP server %s: %w", strings.Join(t.cfg.command, " "), err)
		return
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
		if tool.Name != t.cfg.remote {
			continue
		}
		schema, err := json.Marshal(tool.InputSchema)
		if err != nil {
			t.err = fmt.Errorf("MCP tool %s: input schema: %w", tool.Name, err)
			return
		}
		desc := t.cfg.desc
		if desc == "" {
			desc = tool.Description
		}
		t.c = c
		t.def = provider.ToolDef{Name: t.cfg.name, Description: desc, Parameters: schema}
		return
	}
	t.err = fmt.Errorf("MCP server %s has no tool %q (it has: %s); fix tools.%s.tool in tenant.toml",
		strings.Join(t.cfg.command, " "), t.cfg.remote, strings.Join(names, ", "), t.cfg.name)
}

func (t *mcpTool) Def(context.Context) (provider.ToolDef, error) {
	t.once.Do(t.start)
	return t.def, t.err
}

// Call forwards the model's arguments to the server within the tool's
// timeout. A result the server marks as an error is returned as an error,
// so the trace records it and the model sees it as one.
func (t *mcpTool) Call(ctx context.Context, arguments string) (string, error) {
	t.once.Do(t.start)
	if t.err != nil {
		return "", t.err
	}
	var args map[string]any
	if strings.TrimSpace(arguments) != "" {
		if err := json.Unmarshal([]byte(arguments), &args); err != nil {
			return "", fmt.Errorf("arguments must be a JSON object: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.timeout)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = t.cfg.remote
	req.Params.Arguments = args
	res, err := t.c.CallTool(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("MCP tool %s did not answer within %v", t.cfg.remote, t.cfg.timeout)
		}
		return "", fmt.Errorf("MCP tool %s: %w", t.cfg.remote, err)
	}
	text := resultText(res)
	if res.IsError {
		return "", fmt.Errorf("MCP tool %s: %s", t.cfg.remote, text)
	}
	return text, nil
}

// resultText joins the text parts of a result; other content (images,
// audio) is named rather than sent, since a chat model reads only text.
func resultText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		switch v := c.(type) {
		case mcp.TextContent:
			parts = append(parts, v.Text)
		case *mcp.TextContent:
			parts = append(parts, v.Text)
		default:
			parts = append(parts, fmt.Sprintf("[%T content omitted]", c))
		}
	}
	if len(parts) == 0 && res.StructuredContent != nil {
		if b, err := json.Marshal(res.StructuredContent); err == nil {
			parts = append(parts, string(b))
		}
	}
	return strings.Join(parts, "\n")
}
