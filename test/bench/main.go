//go:build linux

// Command bench measures the operator against the floor on the real local
// control plane (test/localcluster, test/jobrunner), in one run on one
// machine (issue 7):
//
//  1. floor: for every node at once, a small direct client scales its
//     StatefulSet to 0, waits until its pod is gone, creates the Job the
//     operator would create (nodeops.Job from the same jobargs), waits for
//     it to complete and scales back up;
//  2. contract floor (-contract): the same, plus every request DESIGN asks
//     of an operation (the CR, its status at each step, an event per step,
//     its finalizer, the Job's TTL), sent by a direct client without the
//     operator;
//  3. operator: bin/cita-node-operator as its own process, N
//     BlockHeightFallback CRs applied at once;
//
// 1 to 3 alternate for -rounds rounds (default 2) on the same nodes, each
// run's Jobs deleted after it, the operator stopped outside its own run;
// before them, -instant-rounds rounds (default 1) of 1 to 3 with instant
// Jobs: kwok completes every Job pod at once (localcluster.InstantJobImage;
// the job runner leaves them alone), so that the operator's own cost is not
// hidden behind the Jobs' run time. In every run of a round the bench's pod
// watch times each node's downtime and its Job's run; then
//
//  4. a mixed run of every kind (Backup, Snapshot, ChangeOwner,
//     BlockHeightFallback, Restore from a Complete Backup, Switchover on
//     pairs) on distinct nodes;
//  5. memory: the operator restarted with 1000 CRs stored, RSS after a GC.
//
// The operator counts its own requests to the apiserver by verb, resource
// and code (its cita_node_operator_api_requests_total metric), which the
// bench scrapes at the end of each phase. It needs root (the job runner
// mounts volumes) and bin/ (make tools build). Usage:
//
//	go run ./test/bench [-n 500] [-out bench/latest.md]   # full run, ~20 minutes on 2 cores
//	go run ./test/bench -n 50                              # quick mode, about a minute
//	go run ./test/bench -n 50 -rounds 0 -mixed-units 0     # the instant round alone
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

type config struct {
	n           int
	mixedUnits  int
	stored      int
	parallel    int
	kwokNodes   int
	binDir      string
	workDir     string
	out         string
	perf        bool
	pprof       bool
	gcWait      time.Duration
	opWorkers   int
	operatorArg stringList
	operatorEnv stringList
	verbose     bool
	apiProfile  string
	jobTTL      int32
	rounds      int
	instant     int
	contract    bool
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	c := config{jobTTL: 3600}
	flag.IntVar(&c.n, "n", 500, "cloud-config nodes, and BlockHeightFallback operations in the operator run")
	flag.IntVar(&c.mixedUnits, "mixed-units", -1, "units of the mixed run, 7 nodes and 6 operations each (Backup, Snapshot, ChangeOwner, BlockHeightFallback, Restore, Switchover of a pair); -1: min((n-1)/7, 20)")
	flag.IntVar(&c.stored, "stored", -1, "CRs stored when the operator's memory is measured; -1: 1000 if n >= 500, else 0 (skipped: it waits up to -gc-wait for a GC)")
	flag.IntVar(&c.parallel, "parallel", 32, "parallel requests when creating nodes and stored CRs")
	flag.IntVar(&c.kwokNodes, "kwok-nodes", 0, "kwok machines (250 pods each); 0: enough for 2 pods per node")
	flag.StringVar(&c.binDir, "bin", "", "directory of the binaries (make tools build); default: the repository's bin/")
	flag.StringVar(&c.workDir, "work", "", "work directory of the control plane, kept for inspection; default: a temporary one, removed")
	flag.StringVar(&c.out, "out", "", "also write the report (markdown) to this file")
	flag.BoolVar(&c.perf, "perf", false, "record a CPU profile of the operator during the BlockHeightFallback run with perf (perf record -g)")
	flag.BoolVar(&c.pprof, "pprof", false, "run an operator built with net/http/pprof laid over it (test/bench/pprof, go build -overlay) instead of bin/cita-node-operator, and report its allocation and heap profiles")
	flag.DurationVar(&c.gcWait, "gc-wait", 135*time.Second, "longest wait for the restarted operator's first GC after it synced (the runtime forces one every 2 minutes)")
	flag.IntVar(&c.opWorkers, "workers", 0, "operator --workers; 0: the operator's default")
	flag.Var(&c.operatorArg, "operator-arg", "extra operator flag (repeatable)")
	flag.Var(&c.operatorEnv, "operator-env", "extra operator environment variable, KEY=VALUE (repeatable)")
	flag.Func("job-ttl", "ttlSecondsAfterFinished of the BlockHeightFallbacks compared with the floor (default 3600: no Job of either run expires inside its timed window; the bench deletes both runs' Jobs after them); 30 is the README samples' value", func(s string) error {
		v, err := strconv.ParseInt(s, 10, 32)
		c.jobTTL = int32(v)
		return err
	})
	flag.IntVar(&c.rounds, "rounds", 2, "rounds of floor then operator BlockHeightFallbacks on the same nodes; the ratio is over all rounds (one run on a busy machine moves by ±5 %)")
	flag.IntVar(&c.instant, "instant-rounds", 1, "rounds with instant Jobs, before those with real ones: the same floor, contract floor and operator runs, every Job pod completed at once by kwok (localcluster.InstantJobImage; the job runner leaves them alone), so that no Job run time hides what the operator itself costs; 0: none")
	flag.BoolVar(&c.contract, "contract", true, "in each round, between the floor and the operator, the contract floor: the operator's requests sent by a direct client, without the operator")
	flag.StringVar(&c.apiProfile, "apiserver-profile", "", "write CPU profiles of the kube-apiserver (go tool pprof) of the first 30 s of the floor and of the BlockHeightFallback run to this directory")
	flag.BoolVar(&c.verbose, "v", false, "log the control plane's and the runner's progress")
	flag.Parse()
	if c.rounds < 0 || c.instant < 0 || c.rounds+c.instant < 1 {
		fatal(fmt.Errorf("-rounds and -instant-rounds must not be negative, and one of them at least 1"))
	}
	if c.n < 2 {
		fatal(fmt.Errorf("-n must be at least 2"))
	}
	if c.mixedUnits < 0 {
		c.mixedUnits = min((c.n-1)/7, 20)
	}
	if 7*c.mixedUnits+1 > c.n {
		fatal(fmt.Errorf("-mixed-units %d needs %d nodes, -n is %d", c.mixedUnits, 7*c.mixedUnits+1, c.n))
	}
	if c.stored < 0 {
		c.stored = 0
		if c.n >= 500 {
			c.stored = 1000
		}
	}
	if c.kwokNodes == 0 {
		c.kwokNodes = max(2, (2*c.n+2*c.mixedUnits*7)/250+2)
	}
	if c.binDir == "" {
		wd, _ := os.Getwd()
		c.binDir = filepath.Join(wd, "bin")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	rep, err := run(ctx, &c)
	if rep != nil {
		rep.total = time.Since(start)
		text := rep.markdown(&c)
		fmt.Print(text)
		if c.out != "" {
			if werr := os.WriteFile(c.out, []byte(text), 0o644); werr != nil {
				fmt.Fprintln(os.Stderr, "bench:", werr)
			}
		}
		for _, l := range rep.summary() {
			logf("%s", l)
		}
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// logf reports progress on stderr, with the time since the start.
var t0 = time.Now()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, c *config) (*report, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("run as root: the job runner mounts the Job pods' volumes")
	}
	rep := &report{cores: runtime.NumCPU(), cpuModel: cpuModel(), memTotal: memTotal(), n: c.n}
	e, err := setUp(ctx, c)
	if e != nil {
		defer e.tearDown()
	}
	if err != nil {
		return nil, err
	}
	rep.setup = e.setupTimes

	// The instant rounds come first, on the freshest cluster: every round
	// leaves the control plane slower (events, etcd history), which would
	// hide the operator's own cost, what they measure; the real rounds then
	// alternate floor and operator as before. The job runner leaves the
	// instant Jobs' pods to kwok.
	for n := 1; n <= c.instant; n++ {
		err := e.runRound(ctx, c, rep, &rep.instant, round{n: n, of: c.instant, instant: true, last: n == c.instant && c.rounds == 0})
		if err != nil {
			return rep, err
		}
	}
	for n := 1; n <= c.rounds; n++ {
		err := e.runRound(ctx, c, rep, &rep.real, round{n: n, of: c.rounds, last: n == c.rounds})
		if err != nil {
			return rep, err
		}
	}
	rep.floor, rep.contract, rep.fallback = rep.real.first()

	if c.mixedUnits > 0 {
		if err := e.waitNodesRunning(ctx, e.nodes); err != nil {
			return rep, err
		}
		logf("mixed run: %d units", c.mixedUnits)
		if rep.seed, rep.mixed, err = e.runMixed(ctx, c.mixedUnits); err != nil {
			return rep, fmt.Errorf("mixed run: %w", err)
		}
	}
	rep.nonTerminal, err = e.nonTerminal(ctx)
	if err != nil {
		return rep, err
	}
	rep.opTotals = e.op.totals()

	if c.stored > 0 {
		logf("memory: restarting the operator with %d CRs stored", c.stored)
		if rep.stored, err = e.measureStored(ctx, c); err != nil {
			return rep, fmt.Errorf("stored CRs: %w", err)
		}
		if c.pprof {
			rep.heapStored = e.op.pprofTop("heap?gc=1", "inuse_space", fmt.Sprintf("heap in use with %d CRs stored (after a GC)", rep.stored.crs))
		}
	}
	return rep, nil
}

// round is one round of floor, contract floor and operator runs on the
// same nodes: the n-th of `of` with real Jobs, executed by the job runner,
// or with instant ones, completed at once by kwok; after the last round of
// all, its CRs are kept.
type round struct {
	n, of   int
	instant bool
	last    bool
}

// name of one of the round's runs: "fallback", "fallback 2", "instant
// fallback", ...
func (r round) name(run string) string {
	if r.instant {
		run = "instant " + run
	}
	if r.n > 1 {
		run = fmt.Sprintf("%s %d", run, r.n)
	}
	return run
}

// crPrefix names the CRs of one of the round's runs, <prefix><node>: fb-,
// fb2-, ct-, ...; with instant Jobs fbi-, cti2-, ...
func (r round) crPrefix(run string) string {
	if r.instant {
		run += "i"
	}
	if r.n > 1 {
		run += fmt.Sprint(r.n)
	}
	return run + "-"
}

// jobImage is what the round's Jobs run: an instant round's image makes
// kwok complete them.
func (r round) jobImage() string {
	if r.instant {
		return localcluster.InstantJobImage
	}
	return jobImage
}

// crImage is the spec.image of the round's CRs: empty (the operator's
// --job-image) with real Jobs.
func (r round) crImage() string {
	if r.instant {
		return localcluster.InstantJobImage
	}
	return ""
}

func (r round) String() string {
	if r.instant {
		return fmt.Sprintf("instant round %d/%d", r.n, r.of)
	}
	return fmt.Sprintf("round %d/%d", r.n, r.of)
}

// runRound times the floor, then the operator's BlockHeightFallbacks on the
// same nodes, into set; the first round also starts the operator (and the
// first real one the profilers). Each run's Jobs are deleted after it, and
// the round's CRs before the next round.
func (e *env) runRound(ctx context.Context, c *config, rep *report, set *roundSet, rd round) error {
	profile := rd.n == 1 && !rd.instant
	// The floor is the work without the operator: an operator left running
	// would watch the floor's pods, StatefulSets and Jobs and make the
	// apiserver send it every event, work on the floor's side of the ratio.
	if e.op != nil {
		if err := e.op.stop(); err != nil {
			return err
		}
	}
	logf("%s: floor, %d nodes in parallel", rd, c.n)
	floor, err := e.timedRun(ctx, "floor", func() (*phaseResult, error) {
		profDone := func() {}
		if profile {
			profDone = e.profileAPIServer(ctx, c.apiProfile, "floor")
		}
		defer profDone()
		return e.runFloor(ctx, e.nodes, rd)
	})
	if floor != nil {
		set.floors = append(set.floors, floor)
	}
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	if c.contract {
		logf("%s: contract floor, %d nodes in parallel", rd, c.n)
		ct, err := e.timedRun(ctx, "contract floor", func() (*phaseResult, error) { return e.runContract(ctx, e.nodes, rd) })
		if ct != nil {
			set.contracts = append(set.contracts, ct)
		}
		if err != nil {
			return fmt.Errorf("contract floor: %w", err)
		}
		crs := e.cita.CitacloudV1().BlockHeightFallbacks(benchNS)
		if err := forEach(ctx, ct.names, e.cfg.parallel, func(ctx context.Context, name string) error {
			return crs.Delete(ctx, name, metav1.DeleteOptions{})
		}); err != nil {
			return err
		}
	}

	switch {
	case e.op == nil:
		if err := e.startOperator(ctx, c); err != nil {
			return err
		}
		rep.startup = e.op.phase("startup")
	default:
		if err := e.op.start(ctx); err != nil {
			return err
		}
		e.op.phase("startup before " + rd.String())
	}
	if profile && c.perf {
		if err := e.op.startPerf(); err != nil {
			logf("perf: %v (no profile)", err)
		}
	}
	logf("%s: operator, %d BlockHeightFallbacks at once", rd, c.n)
	fallback, err := e.timedRun(ctx, "operator", func() (*phaseResult, error) {
		profDone := func() {}
		if profile {
			profDone = e.profileAPIServer(ctx, c.apiProfile, "fallback")
		}
		fallback, err := e.runFallbacks(ctx, e.nodes, rd)
		profDone()
		if err != nil {
			return fallback, err
		}
		if profile && c.perf {
			rep.profile = e.op.stopPerf()
		}
		if profile && c.pprof {
			rep.allocs = e.op.pprofTop("allocs", "alloc_space", "allocations of the operator from its start to the end of the BlockHeightFallback run")
			rep.heapRun = e.op.pprofTop("heap?gc=1", "inuse_space", "heap in use after the BlockHeightFallback run (after a GC)")
		}
		return fallback, nil
	})
	if fallback != nil {
		set.fallbacks = append(set.fallbacks, fallback)
	}
	if err != nil {
		return fmt.Errorf("operator run: %w", err)
	}
	if !rd.last {
		if err := e.deleteFallbacks(ctx, fallback); err != nil {
			return err
		}
		if err := e.waitQuiet(ctx); err != nil {
			return err
		}
		e.op.phase(fmt.Sprintf("deleting the CRs of %s", rd))
	}
	return nil
}

// timedRun is one timed run of a round with the node clock on. The run
// over, its Jobs are deleted and the nodes awaited (cleanJobs), so that the
// next run starts from the cluster this one found; only then are its nodes'
// downtimes complete: the floor's last nodes start after its window.
func (e *env) timedRun(ctx context.Context, what string, run func() (*phaseResult, error)) (*phaseResult, error) {
	e.clock.begin()
	res, err := run()
	if err != nil {
		return res, err
	}
	if err := e.cleanJobs(ctx, what); err != nil {
		return res, err
	}
	d := e.clock.end(ctx)
	res.downtime = &d
	return res, nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if i := strings.Index(l, ":"); i >= 0 {
				return strings.TrimSpace(l[i+1:])
			}
		}
	}
	return "?"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}
