package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example runs, bounded, against a real Redis and shows what it claims: both instances
// admit and refuse, together they stay within one global bound, and the client sees the
// RateLimit-* and Retry-After headers.
func TestExampleSmoke(t *testing.T) {
	rs := redistest.ForTest(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := options{redis: rs.Addr(), rate: 20, burst: 5, requests: 100, interval: 5 * time.Millisecond, timeout: 20 * time.Second}
	s, err := example(ctx, o, &out)
	t.Log("\n" + out.String())
	require.NoError(t, err)

	total := s.admitted[0] + s.admitted[1]
	assert.LessOrEqual(t, float64(total), s.bound+1, "the instances together admitted more than the global quota")
	assert.Equal(t, o.requests, total+s.refused[0]+s.refused[1])
	for i := range 2 {
		assert.Positive(t, s.admitted[i], "instance %d admitted nothing", i)
		assert.Positive(t, s.refused[i], "instance %d refused nothing", i)
	}
	assert.Equal(t, "5", s.firstAdmitted.Get("RateLimit-Limit"))
	assert.Equal(t, "4", s.firstAdmitted.Get("RateLimit-Remaining"))
	assert.Empty(t, s.firstAdmitted.Get("Retry-After"))
	assert.Equal(t, "0", s.firstRefused.Get("RateLimit-Remaining"))
	assert.Equal(t, "1", s.firstRefused.Get("Retry-After"))
	for _, want := range []string{"instance", "admitted", "refused", "within the global bound", ": yes", "RateLimit-Reset=", "Retry-After=1"} {
		assert.Contains(t, out.String(), want)
	}
}

// Without -redis the program starts its own Redis from PROXYLESS_REDIS_BIN.
func TestStartsItsOwnRedis(t *testing.T) {
	if _, err := redistest.Binary(); err != nil {
		redistest.ForTest(t) // skips, or fails under CI=true, naming the variable
	}
	var out bytes.Buffer
	require.NoError(t, run([]string{"-requests", "20", "-interval", "0s"}, &out))
	assert.Contains(t, out.String(), "started for this run")
	assert.Contains(t, out.String(), ": yes")
}

func TestFlagsAreValidated(t *testing.T) {
	for _, args := range [][]string{
		{"-rate", "0"}, {"-rate", "NaN"}, {"-burst", "0"}, {"-requests", "0"},
		{"-interval", "-1s"}, {"-timeout", "0s"}, {"-nope"}, {"extra"},
	} {
		var out bytes.Buffer
		err := run(args, &out)
		assert.Error(t, err, strings.Join(args, " "))
	}
}

// An unreachable Redis is an error, not a silent fallback.
func TestUnreachableRedis(t *testing.T) {
	var out bytes.Buffer
	err := run([]string{"-redis", "127.0.0.1:1", "-timeout", "5s"}, &out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "127.0.0.1:1")
}
