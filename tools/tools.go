// Package tools defines fapo's MCP tools, one file each: typed In/Out
// structs whose schemas the agent sees, truthful annotations, and a thin
// handler over engine/loop, where every guardrail lives. A refusal (bad
// input, a guardrail saying no) is a tool error with a sentence the agent
// can act on; only infrastructure failures are logged as errors.
package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
)

// Deps is what the tools need.
type Deps struct {
	Workspace *loop.Workspace
}

// All returns every tool, in the order an agent meets them in the loop.
func All(d Deps) []server.ServerTool {
	all := []server.ServerTool{
		ListTenants(d),
		StartSession(d),
		SessionStatus(d),
		Evaluate(d),
		InspectCases(d),
		Attribute(d),
		RunOracle(d),
		ProposeVariant(d),
		ReviewVariant(d),
		Compare(d),
		GetVariant(d),
		DiffVariants(d),
	}
	for i := range all {
		all[i].Tool.RawInputSchema = withoutNullTypes(all[i].Tool.RawInputSchema)
	}
	return all
}

// withoutNullTypes turns the ["null", T] types that Go pointers, slices and
// maps produce into plain T in an input schema. An omitted argument already
// means "unset", and some clients (and MCP Inspector's --strict lint) reject
// union types in inputs.
func withoutNullTypes(schema json.RawMessage) json.RawMessage {
	var v any
	if err := json.Unmarshal(schema, &v); err != nil {
		return schema
	}
	var walk func(any)
	walk = func(n any) {
		switch x := n.(type) {
		case map[string]any:
			if ts, ok := x["type"].([]any); ok && len(ts) == 2 {
				for i, t := range ts {
					if t == "null" {
						x["type"] = ts[1-i]
					}
				}
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(v)
	out, err := json.Marshal(v)
	if err != nil {
		return schema
	}
	return out
}

// tenantArg is implemented by inputs that name a tenant, so that a refusal
// can say what budget is left.
type tenantArg interface{ tenantName() string }

// TenantIn is embedded by every input that names a tenant.
type TenantIn struct {
	Tenant string `json:"tenant" jsonschema:"the tenant's name, as listed by list_tenants"`
}

func (t TenantIn) tenantName() string { return t.Tenant }

// handle turns a typed function into a tool handler: arguments are bound
// to In, the result is returned as structured content with a JSON text
// copy, and an error becomes a tool error that ends with the budget left.
func handle[In, Out any](d Deps, name string, fn func(ctx context.Context, req mcp.CallToolRequest, in In) (Out, error)) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var in In
		if err := unknownArguments[In](name, req.GetArguments()); err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		if err := req.BindArguments(&in); err != nil {
			return mcp.NewToolResultError(fmt.Sprintf("%s: the arguments do not match the input schema (%v); check the types and names of the fields", name, err)), nil
		}
		out, err := fn(ctx, req, in)
		if err != nil {
			msg := refusalText(err)
			if ta, ok := any(in).(tenantArg); ok && d.Workspace != nil {
				if b, ok := d.Workspace.Budget(ta.tenantName()); ok {
					msg += fmt.Sprintf(" [budget left: %s]", b.Summary)
				}
			}
			if refused(err) {
				slog.Info("tool refused", "tool", name, "reason", msg)
			} else {
				slog.Error("tool failed", "tool", name, "err", msg)
			}
			return mcp.NewToolResultError(msg), nil
		}
		text, err := json.Marshal(out)
		if err != nil {
			slog.Error("encode tool result", "tool", name, "err", err)
			return mcp.NewToolResultError(fmt.Sprintf("%s: could not encode the result: %v", name, err)), nil
		}
		return mcp.NewToolResultStructured(out, string(text)), nil
	}
}

// unknownArguments refuses an argument In has no field for: the schema
// says additionalProperties false, and a misspelt filter (class for
// cluster, say) silently ignored would answer a question nobody asked.
func unknownArguments[In any](tool string, args map[string]any) error {
	valid := argumentNames(reflect.TypeFor[In]())
	var unknown []string
	for k := range args {
		if !slices.Contains(valid, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	slices.Sort(valid)
	what := "argument " + unknown[0] + " is"
	if len(unknown) > 1 {
		what = "arguments " + strings.Join(unknown, ", ") + " are"
	}
	if len(valid) == 0 {
		return fmt.Errorf("%s: %s unknown: this tool takes no arguments", tool, what)
	}
	return fmt.Errorf("%s: %s unknown; the arguments are %s (see the input schema)", tool, what, strings.Join(valid, ", "))
}

// argumentNames are the JSON names of a struct's fields, embedded ones
// included.
func argumentNames(t reflect.Type) []string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			out = append(out, argumentNames(f.Type)...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

// budgetOf returns the budget left of a tenant's session, or nil without one.
func budgetOf(d Deps, tenant string) *loop.BudgetView {
	if b, ok := d.Workspace.Budget(tenant); ok {
		return &b
	}
	return nil
}
