package variant

import "fmt"

// TamperedError says a stored variant no longer matches its manifest. It is
// never repaired: the variant is refused for every use from then on.
type TamperedError struct {
	ID ID
	// File is the path inside the variant that does not verify
	// ("manifest.toml" when the manifest itself was edited).
	File string
	// Problem says what is wrong with File.
	Problem string
}

func (e *TamperedError) Error() string {
	return fmt.Sprintf("variant %s was tampered with: %s %s; variants are immutable: propose a new variant instead",
		e.ID, e.File, e.Problem)
}

// NotFoundError says a variant id is well-formed but not in the store.
type NotFoundError struct {
	ID ID
	// Latest is the newest complete variant, "" when the store is empty.
	Latest ID
}

func (e *NotFoundError) Error() string {
	if e.Latest == "" {
		return fmt.Sprintf("variant %s does not exist: the store is empty; the baseline v0000 is created when a session starts", e.ID)
	}
	return fmt.Sprintf("variant %s does not exist: variants go from v0000 to %s; list the variants to pick one", e.ID, e.Latest)
}

// IncompleteError says an id was reserved by a proposal that never finished
// (the process died while writing it). Such an id is never valid.
type IncompleteError struct{ ID ID }

func (e *IncompleteError) Error() string {
	return fmt.Sprintf("variant %s is incomplete: the proposal that reserved it was interrupted before it was written; propose the change again", e.ID)
}
