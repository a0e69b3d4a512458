// Package clients holds end-to-end tests that drive the real MCP clients
// (MCP Inspector CLI, Claude Code, Codex) against the real fapo binary,
// offline: the clients' models are the scripted endpoint of
// engine/loop/agenttest, the tenant's model is the chat-completions double
// of engine/loop/looptest. A client that is not installed makes its tests
// skip loudly; .ci/run installs the pinned versions and exports
// FAPO_CLIENTS_BIN.
package clients
