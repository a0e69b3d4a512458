package clients_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/server/servertest"
)

const inspectorPkg = "@modelcontextprotocol/inspector@2.12.0"

var strictSummaryRe = regexp.MustCompile(`(\d+) errors?, (\d+) warnings? across (\d+) tools?`)

// knownWarningRe is the one class of --strict warning fapo's schemas have
// today: mcp-go writes a Go slice, map or pointer as "type": ["null", X],
// legal JSON Schema that single-type dialects (Gemini's) cannot express.
// Any other finding is new and fails the test.
var knownWarningRe = regexp.MustCompile("^  Issue: `type` is an array \\(\\[\"null\",\"(array|object|number|integer|string|boolean)\"\\]\\)")

// TestInspectorCLI drives the MCP Inspector CLI against the real binary
// over stdio and over HTTP with the bearer header: tools/list --strict,
// a tools/call, a resources/read and a prompts/get.
func TestInspectorCLI(t *testing.T) {
	inspector := clientBin(t, "mcp-inspector", inspectorPkg)
	bin := servertest.Binary(t)
	f := looptest.New(t, nil)
	home := t.TempDir()
	env := baseEnv(home, f)
	const token = "inspector-token-0123456789abcdef"
	url := servertest.StartHTTP(t, bin, f.Dir, f.Home, token)

	targets := map[string][]string{
		"stdio": {"-e", "FAPO_HOME=" + f.Home, "--cwd", f.Dir, bin, "serve", "--workspace", f.Dir},
		"http":  {url, "--transport", "http", "--header", "Authorization: Bearer " + token},
	}
	cases := []struct {
		name   string
		args   []string
		expect []string
	}{
		{"tools/list", []string{"--method", "tools/list"}, []string{`"name": "start_session"`, `"name": "compare"`, `"inputSchema"`}},
		{"tools/call", []string{"--method", "tools/call", "--tool-name", "list_tenants"}, []string{`capitals`, `"structuredContent"`}},
		{"tools/call with arguments", []string{"--method", "tools/call", "--tool-name", "get_variant", "--tool-arg", "tenant=capitals", "variant=v0000"}, []string{`"structuredContent"`, `v0000`, `prompts/answer.md`}},
		{"resources/read", []string{"--method", "resources/read", "--uri", "fapo://tenants/capitals"}, []string{`"uri": "fapo://tenants/capitals"`, `"mimeType": "application/toml"`, `tenant.toml`}},
		{"prompts/get", []string{"--method", "prompts/get", "--prompt-name", "optimize", "--prompt-args", "tenant=capitals"}, []string{`Optimize a fapo tenant`, `tenant **capitals**`}},
	}
	for transport, target := range targets {
		t.Run(transport+"/strict", func(t *testing.T) {
			args := append(append([]string{"--cli"}, target...), "--method", "tools/list", "--strict")
			out, errs, err := run(t, 2*time.Minute, f.Dir, env, inspector, args...)
			require.NoError(t, err, "inspector --strict (exit 6 means an error-severity portability problem):\n%s\n%s", errs, out)
			m := strictSummaryRe.FindStringSubmatch(errs + out)
			require.NotNil(t, m, "no --strict summary in:\n%s", errs)
			require.Equal(t, "0", m[1], "portability errors:\n%s", errs)
			var issues []string
			for _, line := range strings.Split(errs+out, "\n") {
				if strings.HasPrefix(line, "  Issue:") {
					issues = append(issues, line)
					require.Regexp(t, knownWarningRe, line, "a new kind of schema portability problem")
				}
			}
			warnings, _ := strconv.Atoi(m[2])
			require.Len(t, issues, warnings)
			t.Logf("inspector --strict over %s: %s errors, %s warnings across %s tools (all nullable `type` arrays)", transport, m[1], m[2], m[3])
		})
		for _, c := range cases {
			t.Run(transport+"/"+c.name, func(t *testing.T) {
				args := append(append([]string{"--cli"}, target...), c.args...)
				out, errs, err := run(t, 2*time.Minute, f.Dir, env, inspector, args...)
				require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out, errs)
				for _, e := range c.expect {
					require.Contains(t, out, e)
				}
				require.NotContains(t, out, `"isError": true`)
			})
		}
	}

	// Without the bearer header the HTTP server refuses the client.
	t.Run("http/no token", func(t *testing.T) {
		_, _, err := run(t, 2*time.Minute, f.Dir, env, inspector, "--cli", url, "--transport", "http", "--method", "tools/list")
		require.Error(t, err)
	})
}
