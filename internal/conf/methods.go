package conf

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// JSONInto is the body of a config type's UnmarshalJSON: it decodes b strictly into a fresh
// T and stores it in v only when the whole of it is good. A JSON null leaves v as it is.
// Errors are prefixed with the package name ("balancer: outlier.baseEjectionTime: ...").
func JSONInto[T any](pkg string, b []byte, v *T) error {
	var x T
	if err := UnmarshalJSON(b, &x); err != nil {
		if errors.Is(err, ErrEmpty) {
			return nil
		}
		return fmt.Errorf("%s: %w", pkg, err)
	}
	*v = x
	return nil
}

// YAMLInto is the body of a config type's UnmarshalYAML, as JSONInto; errors carry the line
// of the caller's document.
func YAMLInto[T any](pkg string, n *yaml.Node, v *T) error {
	var x T
	if err := UnmarshalYAML(n, &x); err != nil {
		if errors.Is(err, ErrEmpty) {
			return nil
		}
		return fmt.Errorf("%s: %w", pkg, err)
	}
	*v = x
	return nil
}
