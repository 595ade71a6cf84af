package breaker

import (
	"fmt"
	"strconv"
)

// Outcome is what one call says about the health of the endpoint it went to. The zero value is
// Ignore. Outcome marshals to and from the text "ignore", "success" and "failure".
type Outcome uint8

const (
	// Ignore says nothing about the endpoint: the caller cancelled, a hedge lost, the call was
	// refused locally. It never counts, and it frees a half-open probe slot.
	Ignore Outcome = iota
	// Success counts towards closing the breaker.
	Success
	// Failure counts towards opening the breaker.
	Failure
)

func (o Outcome) String() string {
	switch o {
	case Ignore:
		return "ignore"
	case Success:
		return "success"
	case Failure:
		return "failure"
	default:
		return "Outcome(" + strconv.Itoa(int(o)) + ")"
	}
}

// MarshalText implements encoding.TextMarshaler.
func (o Outcome) MarshalText() ([]byte, error) {
	if o > Failure {
		return nil, fmt.Errorf("breaker: invalid Outcome %d", uint8(o))
	}
	return []byte(o.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (o *Outcome) UnmarshalText(text []byte) error {
	switch string(text) {
	case "ignore":
		*o = Ignore
	case "success":
		*o = Success
	case "failure":
		*o = Failure
	default:
		return fmt.Errorf("breaker: Outcome must be one of ignore, success, failure, got %q", text)
	}
	return nil
}
