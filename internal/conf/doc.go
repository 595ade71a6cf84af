// Package conf is the one configuration decoder of the module: it reads a YAML or JSON
// document strictly into any Go struct (camelCase keys from the json tags, unknown and
// repeated keys refused, durations written as strings such as "250ms"), and reports every
// problem as an *Error with the document path ("routes[2].retry.attempts") and the line and
// column where it is. Node and MarshalJSON write values back the same way, so that a
// configuration round-trips. Every package's ParseConfig, Load, UnmarshalJSON and
// UnmarshalYAML goes through it.
package conf
