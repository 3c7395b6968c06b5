package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wafleet/wafleet/internal/buildinfo"
	"github.com/wafleet/wafleet/status"
)

// ExportBuild exports b as wafleet_build_info{version,revision,go} 1: what
// `manager version` prints. Calling it twice with one Info is an error.
func (m *Metrics) ExportBuild(b buildinfo.Info) error {
	rev := b.Revision
	if rev != "" && b.Dirty {
		rev += "-dirty"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Name:        "build_info",
		Help:        "The binary's module version, VCS revision and Go version; always 1.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": rev, "go": b.Go},
	})
	g.Set(1)
	if err := m.reg.Register(g); err != nil {
		return fmt.Errorf("%w build_info: %w", ErrRegister, err)
	}
	return nil
}

// ExportAccountInfo exports wafleet_account_info{account,state,instance} 1
// for every account list returns at scrape time (the status board's List):
// one series per account, so opt-in (config metrics.account_info), as its
// cardinality is the number of accounts, and a state change replaces the
// series. instance labels the accounts this process runs. Calling it twice
// is an error.
func (m *Metrics) ExportAccountInfo(list func() []status.Account, instance string) error {
	c := &accountInfoCollector{list: list, instance: instance, desc: prometheus.NewDesc(
		prometheus.BuildFQName(Namespace, "", "account_info"),
		"One series per account this instance runs, with its state; always 1.",
		[]string{"account", "state", "instance"}, nil)}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("%w account_info: %w", ErrRegister, err)
	}
	return nil
}

type accountInfoCollector struct {
	list     func() []status.Account
	instance string
	desc     *prometheus.Desc
}

func (c *accountInfoCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *accountInfoCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.list() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, a.ID, string(a.State), c.instance)
	}
}
