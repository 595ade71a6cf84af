package dns

import (
	"errors"
	"fmt"
	"strings"

	"github.com/proxyless/proxyless/discovery"
)

// servicePlaceholder stands for the service name in Config.NameTemplate.
const servicePlaceholder = "{service}"

// maxNameTemplate bounds Config.NameTemplate: a DNS name is at most 253 octets.
const maxNameTemplate = 253 + len(servicePlaceholder)

// ParseNameTemplate checks a Config.NameTemplate template and returns the text before and after its
// "{service}". The empty template is "{service}". A template must hold "{service}" exactly
// once, no other brace, and make a valid DNS name of a one-label service name; errors name
// the field Config.NameTemplate.
func ParseNameTemplate(tmpl string) (prefix, suffix string, err error) {
	if tmpl == "" {
		return "", "", nil
	}
	if len(tmpl) > maxNameTemplate {
		return "", "", fmt.Errorf("dns: Config.NameTemplate is %d octets long, over %d", len(tmpl), maxNameTemplate)
	}
	i := strings.Index(tmpl, servicePlaceholder)
	if i < 0 {
		return "", "", fmt.Errorf("dns: Config.NameTemplate %q must contain %s", truncate(tmpl), servicePlaceholder)
	}
	prefix, suffix = tmpl[:i], tmpl[i+len(servicePlaceholder):]
	if strings.ContainsAny(prefix+suffix, "{}") {
		return "", "", fmt.Errorf("dns: Config.NameTemplate %q must contain %s once and no other brace", truncate(tmpl), servicePlaceholder)
	}
	if (prefix != "" && !strings.HasSuffix(prefix, ".")) || (suffix != "" && !strings.HasPrefix(suffix, ".")) {
		return "", "", errors.New("dns: Config.NameTemplate: " + servicePlaceholder + " must be a whole label (between dots), got " + fmt.Sprintf("%q", truncate(tmpl)))
	}
	if err := discovery.ValidateHost(trimDot(prefix + "x" + suffix)); err != nil {
		return "", "", fmt.Errorf("dns: Config.NameTemplate %q: %w", truncate(tmpl), err)
	}
	return prefix, suffix, nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
