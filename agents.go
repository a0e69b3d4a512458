// Package fapo holds the texts at the root of this repository that fapo
// also writes into a workspace (`fapo init --agent claude|codex`): CLAUDE.md
// and AGENTS.md tell the agent a workspace is served to how the optimization
// loop goes. They are embedded from the files themselves so that there is one
// copy to keep right.
package fapo

import _ "embed"

// ClaudeMD is the workspace's CLAUDE.md, for Claude Code.
//
//go:embed CLAUDE.md
var ClaudeMD string

// AgentsMD is the workspace's AGENTS.md, for Codex and other agents.
//
//go:embed AGENTS.md
var AgentsMD string
