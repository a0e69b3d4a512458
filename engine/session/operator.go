package session

// Journal entry kinds of the pinned frozen files and of the operator's
// commands: the journal shows who accepted a change of what the server
// trusts, and every operation refused because of one.
const (
	// KindPinMismatch is an operation refused because the tenant's frozen
	// files differ from the pinned ones.
	KindPinMismatch Kind = "pin_mismatch"
	// KindPinned is the operator recording new hashes (fapo pin).
	KindPinned Kind = "pinned"
	// KindOperatorCommand is an operator command that acts on a tenant
	// (pin, final, session new, eval of a held-out split, seal --force),
	// with the OS user who ran it and whether from a terminal.
	KindOperatorCommand Kind = "operator_command"
)
