package main

import (
	"context"
	"errors"
)

// sealCommand is being built; see the open issues.
func sealCommand() command {
	return command{
		name:    "seal",
		summary: "(not built yet)",
		run: func(ctx context.Context, env *cliEnv, args []string) error {
			return errors.New("not built yet")
		},
	}
}
