package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/discovery"
)

// Registration describes one service instance to add to the catalog through the local agent.
type Registration struct {
	// ID identifies the instance on its agent. Default: "<Name>-<Address>-<Port>".
	ID string
	// Name of the service. Required.
	Name string
	// Address the instance listens on (an IP or host name). Required.
	Address string
	// Port the instance listens on, 1..65535. Required.
	Port int
	// Tags and Meta label the instance; Zone, when set, is stored in Meta under Config.ZoneKey.
	Tags []string
	Meta map[string]string
	Zone string
	// Weight is the instance's share while passing. Default 1.
	Weight int
	// Check is how Consul decides the instance is healthy. Default: none (always passing).
	Check *Check
	// ConnectNative registers the instance as a Connect-native member of the service mesh: it
	// terminates mesh mTLS itself (see package connect), so it is listed among the service's
	// mesh endpoints (/v1/health/connect/<name>) and needs no sidecar. Default false.
	ConnectNative bool
}

// Check is a health check attached to a registration: exactly one of HTTP, TCP and TTL.
type Check struct {
	// HTTP is a URL the agent GETs; a 2xx answer passes.
	HTTP string
	// TCP is a host:port the agent dials.
	TCP string
	// TTL makes the instance report its own health (see KeepPassing); it turns critical when
	// no update arrives within TTL.
	TTL time.Duration
	// Interval between HTTP or TCP checks. Default 10 s.
	Interval time.Duration
	// Timeout of one HTTP or TCP check. Default: Consul's (10 s).
	Timeout time.Duration
	// DeregisterCriticalServiceAfter removes the instance once its check has been critical
	// for this long. Default: never (Consul's minimum is one minute).
	DeregisterCriticalServiceAfter time.Duration
}

// CheckID returns the ID of the registration's check, as used by KeepPassing and Consul's
// /v1/agent/check endpoints.
func (r Registration) CheckID() string { return "service:" + r.id() }

func (r Registration) id() string {
	if r.ID != "" {
		return r.ID
	}
	return r.Name + "-" + r.Address + "-" + strconv.Itoa(r.Port)
}

func (r Registration) validate() error {
	if r.Name == "" {
		return errors.New("consul: Registration.Name is empty")
	}
	if err := discovery.ValidateHost(r.Address); err != nil {
		return fmt.Errorf("consul: Registration.Address: %w", err)
	}
	if r.Port < 1 || r.Port > 65535 {
		return fmt.Errorf("consul: Registration.Port must be in 1..65535, got %d", r.Port)
	}
	if r.Weight < 0 {
		return fmt.Errorf("consul: Registration.Weight must not be negative, got %d", r.Weight)
	}
	c := r.Check
	if c == nil {
		return nil
	}
	kinds := 0
	if c.HTTP != "" {
		kinds++
	}
	if c.TCP != "" {
		kinds++
		if _, _, err := net.SplitHostPort(c.TCP); err != nil {
			return fmt.Errorf("consul: Registration.Check.TCP %q: %v", c.TCP, err)
		}
	}
	if c.TTL != 0 {
		kinds++
	}
	if kinds != 1 {
		return errors.New("consul: Registration.Check must set exactly one of HTTP, TCP and TTL")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"TTL", c.TTL}, {"Interval", c.Interval}, {"Timeout", c.Timeout}, {"DeregisterCriticalServiceAfter", c.DeregisterCriticalServiceAfter}} {
		if d.v < 0 {
			return fmt.Errorf("consul: Registration.Check.%s must not be negative, got %v", d.name, d.v)
		}
	}
	return nil
}

// Register adds reg to the catalog through the agent cfg names, and returns the function that
// removes it. Only cfg's address, token, datacenter, HTTP client and ZoneKey are used.
func Register(ctx context.Context, cfg Config, reg Registration) (deregister func(context.Context) error, err error) {
	if err := reg.validate(); err != nil {
		return nil, err
	}
	client, err := newClient(&cfg)
	if err != nil {
		return nil, err
	}
	meta := make(map[string]string, len(reg.Meta)+1)
	for k, v := range reg.Meta {
		meta[k] = v
	}
	if reg.Zone != "" {
		meta[cfg.ZoneKey] = reg.Zone
	}
	svc := &api.AgentServiceRegistration{
		ID:      reg.id(),
		Name:    reg.Name,
		Address: reg.Address,
		Port:    reg.Port,
		Tags:    reg.Tags,
		Meta:    meta,
	}
	if reg.ConnectNative {
		svc.Connect = &api.AgentServiceConnect{Native: true}
	}
	if reg.Weight > 0 {
		svc.Weights = &api.AgentWeights{Passing: reg.Weight, Warning: 1}
	}
	if c := reg.Check; c != nil {
		chk := &api.AgentServiceCheck{CheckID: reg.CheckID(), HTTP: c.HTTP, TCP: c.TCP}
		if c.TTL > 0 {
			chk.TTL = c.TTL.String()
		} else {
			interval := c.Interval
			if interval == 0 {
				interval = 10 * time.Second
			}
			chk.Interval = interval.String()
		}
		if c.Timeout > 0 {
			chk.Timeout = c.Timeout.String()
		}
		if c.DeregisterCriticalServiceAfter > 0 {
			chk.DeregisterCriticalServiceAfter = c.DeregisterCriticalServiceAfter.String()
		}
		svc.Check = chk
	}
	opts := api.ServiceRegisterOpts{}.WithContext(ctx)
	if err := client.Agent().ServiceRegisterOpts(svc, opts); err != nil {
		return nil, fmt.Errorf("consul: register %q: %w", svc.ID, err)
	}
	id := svc.ID
	return func(ctx context.Context) error {
		if err := client.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
			return fmt.Errorf("consul: deregister %q: %w", id, err)
		}
		return nil
	}, nil
}

// Heartbeat keeps a TTL check passing. Create it with [KeepPassing]; Close stops it.
type Heartbeat struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// KeepPassing marks the TTL check checkID passing at once and then every `every`, until the
// returned Heartbeat is closed. Choose `every` well inside the check's TTL (a third of it, say).
// Failed updates are logged through cfg.Logger and retried at the next tick.
func KeepPassing(cfg Config, checkID string, every time.Duration) (*Heartbeat, error) {
	if checkID == "" {
		return nil, errors.New("consul: KeepPassing: checkID is empty")
	}
	if every <= 0 {
		return nil, fmt.Errorf("consul: KeepPassing: every must be positive, got %v", every)
	}
	client, err := newClient(&cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Heartbeat{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			q := (&api.QueryOptions{}).WithContext(ctx)
			if err := client.Agent().UpdateTTLOpts(checkID, "", api.HealthPassing, q); err != nil && ctx.Err() == nil {
				cfg.Logger.Warn("consul: TTL update failed", "check", checkID, "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return h, nil
}

// Close stops the heartbeat and waits for it. It is idempotent. The check then turns critical
// once its TTL passes.
func (h *Heartbeat) Close() error {
	h.once.Do(h.cancel)
	<-h.done
	return nil
}
