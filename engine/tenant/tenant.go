package tenant

import (
	"fmt"
	"path/filepath"

	"github.com/BurntSushi/toml"
)

// Tenant is a loaded tenant directory.
type Tenant struct {
	// Dir is the absolute path of the tenant directory.
	Dir    string
	Config Config
}

// Load reads dir/tenant.toml.
func Load(dir string) (*Tenant, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var cfg Config
	if _, err := toml.DecodeFile(filepath.Join(abs, "tenant.toml"), &cfg); err != nil {
		return nil, fmt.Errorf("load tenant %s: %w", dir, err)
	}
	return &Tenant{Dir: abs, Config: cfg}, nil
}
