package citanode

import "fmt"

// InputError says what keeps a CitaNode from running as it is: its spec,
// its config.toml or its account. Nothing retrying fixes it; the user does.
type InputError struct{ Reason string }

func (e *InputError) Error() string { return e.Reason }

func inputError(format string, args ...any) error {
	return &InputError{Reason: fmt.Sprintf(format, args...)}
}
