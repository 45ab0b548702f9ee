//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

var everything = labels.Everything()

type report struct {
	cores              int
	cpuModel, memTotal string
	n                  int
	total              time.Duration
	setup              setupTimes
	startup            phaseStats
	floor              *phaseResult // round 1 with real Jobs
	fallback           *phaseResult // round 1 with real Jobs
	contract           *phaseResult // round 1 with real Jobs
	real, instant      roundSet     // the rounds with real Jobs, with instant Jobs
	seed, mixed        *phaseResult
	nonTerminal        []string
	opTotals           phaseStats
	stored             *storedResult
	profile            string
	allocs, heapRun    string
	heapStored         string
}

// roundSet is the runs of the rounds of one kind (real or instant Jobs).
type roundSet struct {
	floors, contracts, fallbacks []*phaseResult
}

// first is round 1's runs (nil when none ran).
func (s *roundSet) first() (floor, contract, fallback *phaseResult) {
	at := func(l []*phaseResult) *phaseResult {
		if len(l) == 0 {
			return nil
		}
		return l[0]
	}
	return at(s.floors), at(s.contracts), at(s.fallbacks)
}

// wallRatio is the operator's walls summed over the floor's, over all
// rounds (0: no round), each round's ratio, and the ratio of the p50s of
// the latencies of all rounds.
func (s *roundSet) wallRatio() (ratio, p50 float64, rounds []string) {
	var floorWall, opWall time.Duration
	var floorLat, opLat []time.Duration
	for i := range min(len(s.floors), len(s.fallbacks)) {
		fl, fb := s.floors[i], s.fallbacks[i]
		floorWall, opWall = floorWall+fl.wall, opWall+fb.wall
		floorLat, opLat = append(floorLat, fl.latencies...), append(opLat, fb.latencies...)
		rounds = append(rounds, fmt.Sprintf("%.2f", fb.wall.Seconds()/fl.wall.Seconds()))
	}
	if floorWall == 0 {
		return 0, 0, rounds
	}
	return opWall.Seconds() / floorWall.Seconds(), percentile(opLat, 0.5).Seconds() / percentile(floorLat, 0.5).Seconds(), rounds
}

// contractRatios are contract floor / floor and operator / contract floor
// over the n rounds that ran all three.
func (s *roundSet) contractRatios() (contractFloor, operatorContract float64, n int) {
	n = min(len(s.contracts), len(s.floors), len(s.fallbacks))
	var fl, ct, op time.Duration
	for i := range n {
		fl, ct, op = fl+s.floors[i].wall, ct+s.contracts[i].wall, op+s.fallbacks[i].wall
	}
	if n == 0 {
		return 0, 0, 0
	}
	return ct.Seconds() / fl.Seconds(), op.Seconds() / ct.Seconds(), n
}

// writesPerOp is the operator's writes (events excluded) per operation
// over the rounds' runs.
func (s *roundSet) writesPerOp() (per float64, ops int) {
	var writes int
	for _, fb := range s.fallbacks {
		if fb.operator != nil {
			_, w, _ := fb.operator.requests.total()
			writes, ops = writes+w, ops+fb.ops
		}
	}
	if ops == 0 {
		return 0, 0
	}
	return float64(writes) / float64(ops), ops
}

// downtime pools the downtimes of the floors' and of the operator's runs.
func (s *roundSet) downtime() (floor, operator downtime) {
	of := func(l []*phaseResult) downtime {
		var ds []*downtime
		for _, r := range l {
			ds = append(ds, r.downtime)
		}
		return mergeDowntimes(ds...)
	}
	return of(s.floors), of(s.fallbacks)
}

// summary: the operator against the floor with real and with instant Jobs,
// in a few lines.
func (r *report) summary() []string {
	var out []string
	for _, k := range []struct {
		what string
		set  *roundSet
	}{{"Real Jobs", &r.real}, {"Instant Jobs", &r.instant}} {
		ratio, _, rounds := k.set.wallRatio()
		if ratio == 0 {
			continue
		}
		fl, op := k.set.downtime()
		out = append(out, fmt.Sprintf("%s: operator / floor wall %.2f (rounds: %s); node downtime beyond the Job's run p50 / p99: floor %s / %s, operator %s / %s",
			k.what, ratio, strings.Join(rounds, ", "),
			sec(percentile(fl.added, 0.5)), sec(percentile(fl.added, 0.99)), sec(percentile(op.added, 0.5)), sec(percentile(op.added, 0.99))))
	}
	return out
}

// Targets of issue 7.
const (
	targetRatio          = 1.5
	targetWritesPerOp    = 9.0 // issue 17 added one status write: the node seen Ready
	targetStoredRSS      = 60 << 20
	targetNonTerminalCRs = 0
)

func (r *report) markdown(c *config) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	kernel, _ := exec.Command("uname", "-r").Output()
	p("## Run of %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	p("Command: `%s` (as root, from the repository root, after `make tools build`)\n\n", strings.Join(append([]string{"go run ./test/bench"}, os.Args[1:]...), " "))
	p("Machine: %d cores (%s), %s RAM, Linux %s, %s. Everything runs on it at once: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (%d machines), the job runner executing every Job pod, the operator and the bench.\n\n",
		r.cores, r.cpuModel, r.memTotal, strings.TrimSpace(string(kernel)), runtime.Version(), c.kwokNodes)
	p("Setup: control plane + CRDs + chart + runner %s; %d cloud-config nodes running %s. Whole run %s.\n\n",
		r.setup.cluster.Round(time.Second), r.n, r.setup.nodes.Round(time.Second), r.total.Round(time.Second))

	if sum := r.summary(); len(sum) > 0 {
		p("**Summary.** %s.\n\n", strings.Join(sum, ". "))
	}

	p("### Time\n\n")
	p("| run | operations | wall | p50 | p99 | max | not Complete |\n|---|---:|---:|---:|---:|---:|---:|\n")
	row := func(label string, res *phaseResult) {
		if res == nil {
			return
		}
		p("| %s | %d | %s | %s | %s | %s | %d |\n", label, len(res.latencies), sec(res.wall),
			sec(percentile(res.latencies, 0.5)), sec(percentile(res.latencies, 0.99)), sec(percentile(res.latencies, 1)), res.failed)
	}
	// runs calls f on every run of both kinds of round, with its label's
	// round suffix.
	runs := func(f func(label, round string, res *phaseResult)) {
		for _, k := range []struct {
			set     *roundSet
			instant bool
		}{{&r.real, false}, {&r.instant, true}} {
			s := k.set
			for i := range max(len(s.floors), len(s.fallbacks)) {
				var parts []string
				if k.instant {
					parts = append(parts, "instant Jobs")
				}
				if len(s.floors) > 1 {
					parts = append(parts, fmt.Sprintf("round %d", i+1))
				}
				round := ""
				if len(parts) > 0 {
					round = " (" + strings.Join(parts, ", ") + ")"
				}
				if i < len(s.floors) {
					f("floor: direct client, BlockHeightFallback Job per node", round, s.floors[i])
				}
				if i < len(s.contracts) {
					f("contract floor: direct client, the operator's requests", round, s.contracts[i])
				}
				if i < len(s.fallbacks) {
					f("operator: BlockHeightFallback CRs", round, s.fallbacks[i])
				}
			}
		}
	}
	runs(func(label, round string, res *phaseResult) { row(label+round, res) })
	row("operator: one Backup alone (seed of the Restores)", r.seed)
	row("operator: mixed, all kinds", r.mixed)
	if r.mixed != nil {
		kinds := make([]string, 0, len(r.mixed.byKind))
		for k := range r.mixed.byKind {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			d := r.mixed.byKind[k]
			p("| &nbsp;&nbsp;mixed: %s | %d | | %s | %s | %s | |\n", k, len(d), sec(percentile(d, 0.5)), sec(percentile(d, 0.99)), sec(percentile(d, 1)))
		}
	}
	p("\nLatency: floor, from the node's first request to its scale-up returning; operator, from the CR's create returning to the bench's watch seeing it Complete or Failed. Wall: first request to last finish.\n\n")
	p("The BlockHeightFallbacks compared with the floor have ttlSecondsAfterFinished %d s (-job-ttl); the floor's Jobs have none. ", c.jobTTL)
	if c.jobTTL >= 600 {
		p("No Job of either run expires inside its timed window: both runs' Jobs are deleted after it (the floor would otherwise be spared the Job and pod deletions of the TTL controller that the operator's run pays for). ")
	} else {
		p("The TTL controller deletes the operator's Jobs and their pods inside its timed window, work the floor's Jobs never cause inside theirs. ")
	}
	p("The mixed run keeps the default (30 s).\n\n")

	// Over all rounds: the operators' wall times summed over the floors'.
	ratio, p50ratio, rounds := r.real.wallRatio()
	if len(rounds) > 1 {
		p("Operator / floor wall by round: %s; over all rounds %.2f.\n\n", strings.Join(rounds, ", "), ratio)
	}
	if ctf, opc, n := r.real.contractRatios(); n > 0 {
		p("Contract floor / floor (what the contract's requests cost): %.2f; operator / contract floor (what the operator process, its informers and its queue cost): %.2f; over %d round(s).\n\n",
			ctf, opc, n)
	}
	if iratio, ip50, irounds := r.instant.wallRatio(); iratio > 0 {
		p("**With instant Jobs** (every Job pod completed by kwok at once, in one status write, with the result the job binary would report; the job runner not started yet): nothing of a Job's run time is left to hide what stands around it. Operator / floor wall %.2f (by round: %s; p50 ratio %.2f)", iratio, strings.Join(irounds, ", "), ip50)
		if ctf, opc, n := r.instant.contractRatios(); n > 0 {
			p("; contract floor / floor %.2f, operator / contract floor %.2f", ctf, opc)
		}
		p(".\n\n")
	}

	p("#### Node downtime\n\n")
	p("| run | nodes measured | down p50 | down p99 | Job p50 | Job p99 | beyond the Job p50 | beyond the Job p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	runs(func(label, round string, res *phaseResult) {
		d := res.downtime
		if d == nil {
			return
		}
		label, _, _ = strings.Cut(label, ":")
		p("| %s%s | %d / %d | %s | %s | %s | %s | **%s** | **%s** |\n", label, round, len(d.added), d.stopped,
			sec(percentile(d.down, 0.5)), sec(percentile(d.down, 0.99)), sec(percentile(d.job, 0.5)), sec(percentile(d.job, 0.99)),
			sec(percentile(d.added, 0.5)), sec(percentile(d.added, 0.99)))
	})
	p("\nFrom the bench's pod watch, on its own clock: a node is down from its pod seen told to stop (a deletionTimestamp) to its next pod seen Running; its Job ran from its pod seen Running to seen finished (an instant Job's pod is first seen finished: 0). Beyond the Job: down minus the Job's run, what stopping the node, creating the Job, noticing its end and starting the node again added: the control plane's part in the floor, the operator's on top of it in its run. Nodes measured: with all four events seen, of those stopped.\n\n")
	p("CPU below: round 1 of each kind.\n\n")

	p("#### Where the machine's CPU went during the timed windows\n\n")
	cols := []*phaseResult{}
	ifl, ict, ifb := r.instant.first()
	for _, res := range []*phaseResult{r.floor, r.contract, r.fallback, ifl, ict, ifb, r.mixed} {
		if res != nil && res.cpu.procs != nil {
			cols = append(cols, res)
		}
	}
	if len(cols) > 0 {
		p("| process |")
		for _, res := range cols {
			p(" %s (CPU s) | per op (ms) |", res.name)
		}
		p("\n|---|")
		for range cols {
			p("---:|---:|")
		}
		p("\n")
		for _, name := range cols[len(cols)-1].cpu.sortedNames() {
			p("| %s |", name)
			for _, res := range cols {
				v := res.cpu.procs[name]
				p(" %.1f | %.0f |", v, 1000*v/float64(len(res.latencies)))
			}
			p("\n")
		}
		p("| **machine busy / capacity** |")
		for _, res := range cols {
			p(" %.1f / %.1f (%.0f%%) | %.0f |", res.cpu.busy, res.cpu.total, 100*res.cpu.busy/res.cpu.total, 1000*res.cpu.busy/float64(len(res.latencies)))
		}
		p("\n\n")
	}

	var apiCols []*phaseResult
	for _, res := range cols {
		if len(res.api.requests) > 0 {
			apiCols = append(apiCols, res)
		}
	}
	if len(apiCols) > 0 {
		p("#### What the kube-apiserver served during the timed windows, all clients, per operation\n\n")
		p("From its own metrics (`apiserver_request_total`, `apiserver_watch_events_total`): the requests of the operator or the floor's client, the bench's CR creates, and what the rest of the control plane, kwok and the job runner did because of them.\n\n")
		table := func(what string, get func(*phaseResult) map[string]float64) {
			p("| %s |", what)
			for _, res := range apiCols {
				p(" %s |", res.name)
			}
			p("\n|---|")
			for range apiCols {
				p("---:|")
			}
			p("\n")
			var maps []map[string]float64
			for _, res := range apiCols {
				maps = append(maps, get(res))
			}
			sums := make([]float64, len(apiCols))
			for _, k := range apiLoadRows(maps...) {
				var cells []string
				show := false
				for i, res := range apiCols {
					v := get(res)[k] / float64(len(res.latencies))
					sums[i] += v
					show = show || v >= 0.05
					cells = append(cells, fmt.Sprintf(" %.2f |", v))
				}
				if show {
					p("| %s |%s\n", k, strings.Join(cells, ""))
				}
			}
			p("| **all** |")
			for _, v := range sums {
				p(" **%.2f** |", v)
			}
			p("\n\n")
		}
		table("request (verb resource)", func(r *phaseResult) map[string]float64 { return r.api.requests })
		table("watch events sent (resource)", func(r *phaseResult) map[string]float64 { return r.api.watchEvents })
		table("kube-controller-manager work queue adds (controller)", func(r *phaseResult) map[string]float64 { return r.api.queueAdds })
		p("Watch event bytes sent per operation:")
		for _, res := range apiCols {
			p(" %s %.1f KiB;", res.name, res.api.watchBytes/1024/float64(len(res.latencies)))
		}
		p(" rows under 0.05 per operation in every column are left out of the tables, not out of the totals.\n\n")
	}

	p("### Targets (issue 7)\n\n| target | measured | |\n|---|---:|---|\n")
	if ratio > 0 {
		p("| operator / floor wall ≤ %.1f at N = %d | %.2f (rounds: %s; p50 ratio %.2f) | %s |\n", targetRatio, r.n, ratio, strings.Join(rounds, ", "), p50ratio, verdict(ratio <= targetRatio))
	}
	if per, ops := r.real.writesPerOp(); ops > 0 {
		p("| API writes per BlockHeightFallback, events excluded ≤ %.0f | %.2f (%d operations) | %s |\n", targetWritesPerOp, per, ops, verdict(per <= targetWritesPerOp))
	}
	if per, ops := r.instant.writesPerOp(); ops > 0 {
		p("| API writes per BlockHeightFallback with instant Jobs, events excluded ≤ %.0f | %.2f (%d operations) | %s |\n", targetWritesPerOp, per, ops, verdict(per <= targetWritesPerOp))
	}
	if r.mixed != nil && r.mixed.operator != nil {
		_, w, _ := r.mixed.operator.requests.total()
		per := float64(w) / float64(r.mixed.ops)
		p("| API writes per operation of the mixed run, events excluded ≤ %.0f | %.2f | %s |\n", targetWritesPerOp, per, verdict(per <= targetWritesPerOp))
	}
	if r.stored != nil {
		p("| operator RSS ≤ 60 MiB with %d CRs stored | %s | %s |\n", r.stored.crs, mib(r.stored.rss), verdict(r.stored.rss <= targetStoredRSS))
	}
	p("| no CR left non-terminal | %d | %s |\n\n", len(r.nonTerminal), verdict(len(r.nonTerminal) == targetNonTerminalCRs))
	for _, s := range r.nonTerminal {
		p("- non-terminal: %s\n", s)
	}

	p("### Operator process\n\n")
	p("| phase | wall | CPU s | CPU s / op | peak RSS | VmHWM | requests | writes (no events) | writes / op | event writes | event writes / op |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	phaseRow := func(s *phaseStats, ops int) {
		if s == nil {
			return
		}
		all, w, ev := s.requests.total()
		perOp := func(v float64) string {
			if ops == 0 {
				return ""
			}
			return fmt.Sprintf("%.2f", v/float64(ops))
		}
		p("| %s | %s | %.1f | %s | %s | %s | %d | %d | %s | %d | %s |\n", s.name, sec(s.wall), s.cpu, perOp(s.cpu), mib(s.peakRSS), mib(s.hwm), all, w, perOp(float64(w)), ev, perOp(float64(ev)))
	}
	phaseRow(&r.startup, 0)
	fallbacks := append(slices.Clone(r.real.fallbacks), r.instant.fallbacks...)
	for _, res := range append(slices.Clone(fallbacks), r.seed, r.mixed) {
		if res != nil {
			phaseRow(res.operator, res.ops)
		}
	}
	if r.stored != nil {
		phaseRow(&r.stored.startup, 0)
	}
	p("\nA phase runs from the end of the previous one until every CR of it is finished, its finalizer removed, the operator's queues empty and no request sent for a second. Peak RSS is sampled every 100 ms; VmHWM is the process's lifetime peak. CPU: utime+stime from /proc/<pid>/stat.\n\n")

	for _, res := range append(fallbacks, r.mixed) {
		if res == nil || res.operator == nil {
			continue
		}
		p("#### Requests of the %s run (%d operations), by verb and resource\n\n", res.name, res.ops)
		p("| verb | resource | requests | per operation | of which 409 Conflict |\n|---|---|---:|---:|---:|\n")
		reqs := res.operator.requests
		for _, k := range reqs.sorted() {
			p("| %s | %s | %d | %.2f | %d |\n", k.verb, k.resource, reqs.byKey[k], float64(reqs.byKey[k])/float64(res.ops), reqs.conflicts[k])
		}
		p("\nResponse codes: %s\n\n", codes(reqs.statuses))
	}

	if r.stored != nil {
		s := r.stored
		p("### Memory with %d CRs stored\n\n", s.crs)
		p("The operator was stopped, finished BlockHeightFallbacks (a copy of a real finished one's status each) added up to %d CRs, and the operator started again: ready in %s, %d requests to sync. Its caches also hold %s.\n\n",
			s.crs, s.ready.Round(time.Millisecond), func() int { a, _, _ := s.startup.requests.total(); return a }(), s.objectsIn)
		gc := fmt.Sprintf("after its first GC since it synced (%s later)", s.waitedGC.Round(time.Second))
		if !s.gcSeen {
			gc = fmt.Sprintf("no GC seen within %s of the sync: RSS still holds the sync's garbage", s.waitedGC.Round(time.Second))
		}
		p("| VmRSS (%s) | of which anonymous | of which file-backed (the binary's pages) | VmHWM | Go heap in use | Go heap alloc | Go runtime sys |\n|---:|---:|---:|---:|---:|---:|---:|\n| %s | %s | %s | %s | %.1f MiB | %.1f MiB | %.1f MiB |\n\n",
			gc, mib(s.rss), mib(s.anon), mib(s.file), mib(s.hwm), s.heapInuse/(1<<20), s.heapAlloc/(1<<20), s.goSys/(1<<20))
		kinds := make([]string, 0, len(s.crsOfKinds))
		for k, v := range s.crsOfKinds {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, v))
		}
		sort.Strings(kinds)
		p("CRs: %s.\n\n", strings.Join(kinds, ", "))
	}
	p("Operator processes in all (one per round: each floor runs without the operator; before the memory restart): CPU %.1f s, highest VmHWM %s.\n\n", r.opTotals.cpu, mib(r.opTotals.hwm))
	for _, prof := range []string{r.allocs, r.heapRun, r.heapStored} {
		if prof != "" {
			p("%s\n\n", prof)
		}
	}
	if r.profile != "" {
		p("### CPU profile of the operator during the BlockHeightFallback run (perf)\n\n```\n%s\n```\n\n", r.profile)
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func sec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func codes(m map[int]int) string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d × %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
