// Package server assembles fapo's MCP server: the tools, resources and
// prompts over the optimization loop, server instructions, and the two
// transports (stdio; streamable HTTP behind a bearer token). It holds no
// domain logic: guardrails live in engine/, behind the tools.
package server
