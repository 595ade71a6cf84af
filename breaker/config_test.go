package breaker

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" for valid
	}{
		{name: "zero value", cfg: Config{}},
		{name: "all set", cfg: Config{FailureRateThreshold: 25, MinimumVolume: 5, Window: time.Minute,
			OpenDelay: time.Second, OpenDelayJitter: 0.2, HalfOpenProbes: 4, SuccessesToClose: 2}},
		{name: "time window", cfg: Config{Window: 10 * time.Millisecond, MinimumVolume: 100}},
		{name: "rate 100", cfg: Config{FailureRateThreshold: 100}},
		{name: "rate over 100", cfg: Config{FailureRateThreshold: 140},
			wantErr: "breaker: FailureRateThreshold must be in (0,100], got 140"},
		{name: "rate negative", cfg: Config{FailureRateThreshold: -1},
			wantErr: "breaker: FailureRateThreshold must be in (0,100], got -1"},
		{name: "rate NaN", cfg: Config{FailureRateThreshold: math.NaN()},
			wantErr: "breaker: FailureRateThreshold must be in (0,100], got NaN"},
		{name: "volume negative", cfg: Config{MinimumVolume: -3},
			wantErr: "breaker: MinimumVolume must be in [1,1000000], got -3"},
		{name: "volume huge", cfg: Config{MinimumVolume: 2_000_000},
			wantErr: "breaker: MinimumVolume must be in [1,1000000], got 2000000"},
		{name: "window negative", cfg: Config{Window: -time.Second},
			wantErr: "breaker: Window must be 0 or >= 10ms, got -1s"},
		{name: "window tiny", cfg: Config{Window: time.Millisecond},
			wantErr: "breaker: Window must be 0 or >= 10ms, got 1ms"},
		{name: "delay negative", cfg: Config{OpenDelay: -time.Second},
			wantErr: "breaker: OpenDelay must be >= 0, got -1s"},
		{name: "jitter one", cfg: Config{OpenDelayJitter: 1},
			wantErr: "breaker: OpenDelayJitter must be in [0,1), got 1"},
		{name: "jitter negative", cfg: Config{OpenDelayJitter: -0.1},
			wantErr: "breaker: OpenDelayJitter must be in [0,1), got -0.1"},
		{name: "probes negative", cfg: Config{HalfOpenProbes: -1},
			wantErr: "breaker: HalfOpenProbes must be in [1,1000], got -1"},
		{name: "probes unbounded", cfg: Config{HalfOpenProbes: 1001},
			wantErr: "breaker: HalfOpenProbes must be in [1,1000], got 1001"},
		{name: "successes over default probes", cfg: Config{SuccessesToClose: 4},
			wantErr: "breaker: SuccessesToClose must be in [1,HalfOpenProbes=3], got 4"},
		{name: "successes over probes", cfg: Config{HalfOpenProbes: 5, SuccessesToClose: 6},
			wantErr: "breaker: SuccessesToClose must be in [1,HalfOpenProbes=5], got 6"},
		{name: "successes negative", cfg: Config{SuccessesToClose: -2},
			wantErr: "breaker: SuccessesToClose must be in [1,HalfOpenProbes=3], got -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			_, newErr := New(tt.cfg)
			_, setErr := NewSet(tt.cfg)
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.NoError(t, newErr)
				require.NoError(t, setErr)
				return
			}
			require.EqualError(t, err, tt.wantErr)
			require.EqualError(t, newErr, tt.wantErr) // and no panic from the failsafe-go builder
			require.EqualError(t, setErr, tt.wantErr)
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	got, err := Config{}.normalize()
	require.NoError(t, err)
	require.Equal(t, Config{
		FailureRateThreshold: 50,
		MinimumVolume:        20,
		OpenDelay:            5 * time.Second,
		HalfOpenProbes:       3,
		SuccessesToClose:     3,
	}, got)

	got, err = Config{HalfOpenProbes: 7}.normalize()
	require.NoError(t, err)
	require.Equal(t, 7, got.SuccessesToClose, "SuccessesToClose defaults to HalfOpenProbes")
}

func TestConfigJSON(t *testing.T) {
	var cfg Config
	require.NoError(t, json.Unmarshal([]byte(`{
		"failureRateThreshold": 30,
		"minimumVolume": 8,
		"window": "30s",
		"openDelay": "2s",
		"halfOpenProbes": 2
	}`), &cfg))
	require.Equal(t, Config{FailureRateThreshold: 30, MinimumVolume: 8, Window: 30 * time.Second,
		OpenDelay: 2 * time.Second, HalfOpenProbes: 2}, cfg)
	require.NoError(t, cfg.Validate())
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.JSONEq(t, `{"failureRateThreshold":30,"minimumVolume":8,"window":"30s","openDelay":"2s","halfOpenProbes":2}`, string(b))
	var back Config
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, cfg, back)
	err = json.Unmarshal([]byte(`{"openDelay": 2000000000}`), &back)
	require.ErrorContains(t, err, `breaker: openDelay: want a duration string such as "250ms"`)
	require.ErrorContains(t, json.Unmarshal([]byte(`{"open_delay": "1s"}`), &back), `unknown field "open_delay" (did you mean "openDelay"?)`)

	var o Outcome
	require.NoError(t, json.Unmarshal([]byte(`"failure"`), &o))
	require.Equal(t, Failure, o)
	require.Error(t, json.Unmarshal([]byte(`"maybe"`), &o))
}
