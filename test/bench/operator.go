//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

// operator is bin/cita-node-operator as its own process, acting as the
// chart's ServiceAccount, watched through /proc and its /metrics (where it
// counts its own requests to the apiserver).
type operator struct {
	bin, kubeconfig, logDir string
	args, env               []string

	proc         *localcluster.Process
	metricsURL   string
	healthURL    string
	starts       int
	perfCmd      *exec.Cmd
	perfData     string
	stopSampling chan struct{}
	pprofURL     string

	mu         sync.Mutex
	phasePeak  int64 // VmRSS peak since the last phase mark, bytes
	lastCPU    float64
	lastCounts requestCounts
	// earlier: the requests, CPU seconds and VmHWM of the operator
	// processes stopped before.
	earlier    requestCounts
	earlierCPU float64
	earlierHWM int64
	phaseStart time.Time
	runs       []phaseStats
}

// phaseStats is what the operator cost during one phase.
type phaseStats struct {
	name     string
	wall     time.Duration
	cpu      float64 // seconds, utime+stime
	peakRSS  int64   // sampled every 100 ms
	hwm      int64   // VmHWM at the end of the phase (process lifetime)
	requests requestCounts
}

const clockTicks = 100 // USER_HZ on Linux

func (e *env) startOperator(ctx context.Context, c *config) error {
	var err error
	kc := filepath.Join(e.cluster.WorkDir, "operator.kubeconfig")
	if err := localcluster.ImpersonatingKubeconfig(e.cluster.Kubeconfig, kc, "cita", "cita-node-operator"); err != nil {
		return err
	}
	args := []string{"--job-image=" + jobImage}
	if c.opWorkers > 0 {
		args = append(args, fmt.Sprintf("--workers=%d", c.opWorkers))
	}
	e.op = &operator{
		bin: filepath.Join(c.binDir, "cita-node-operator"), kubeconfig: kc, logDir: e.cluster.LogDir,
		args: append(args, c.operatorArg...), env: c.operatorEnv, earlier: newRequestCounts(),
	}
	if c.pprof {
		if e.op.bin, err = buildPprofOperator(filepath.Dir(c.binDir), e.cluster.WorkDir); err != nil {
			return err
		}
		e.op.pprofURL = "pending"
	}
	return e.op.start(ctx)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start runs the operator and returns once its caches are synced (/readyz).
func (o *operator) start(ctx context.Context) error {
	o.starts++
	mp, err := freePort()
	if err != nil {
		return err
	}
	hp, err := freePort()
	if err != nil {
		return err
	}
	o.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", mp)
	o.healthURL = fmt.Sprintf("http://127.0.0.1:%d/readyz", hp)
	args := append([]string{
		"--kubeconfig=" + o.kubeconfig,
		"--leader-elect=false",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", mp),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", hp),
		"--v=0",
	}, o.args...)
	env := append([]string(nil), o.env...)
	if o.pprofURL != "" {
		pp, err := freePort()
		if err != nil {
			return err
		}
		o.pprofURL = fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", pp)
		env = append(env, fmt.Sprintf("CITA_BENCH_PPROF=127.0.0.1:%d", pp))
	}
	o.mu.Lock()
	o.lastCounts = newRequestCounts() // a new process counts from 0
	o.lastCPU, o.phasePeak, o.phaseStart = 0, 0, time.Now()
	o.mu.Unlock()
	if o.proc, err = localcluster.StartProcess(fmt.Sprintf("operator-%d", o.starts), o.bin, o.logDir, env, args...); err != nil {
		return err
	}
	logPath := o.proc.LogFile
	o.stopSampling = make(chan struct{})
	go o.sample(o.proc.Pid(), o.stopSampling)

	start := time.Now()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		select {
		case <-o.proc.Done():
			return false, fmt.Errorf("operator exited; see %s", logPath)
		default:
		}
		resp, err := http.Get(o.healthURL)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("operator not ready: %w", err)
	}
	logf("operator (pid %d) ready in %s; log %s", o.proc.Pid(), time.Since(start).Round(time.Millisecond), logPath)
	return nil
}

func (o *operator) stop() error {
	if o.proc == nil {
		return nil
	}
	close(o.stopSampling)
	o.earlier = o.earlier.add(o.requests())
	cpu, _ := procCPU(o.proc.Pid())
	_, hwm, _ := procMem(o.proc.Pid())
	o.earlierCPU, o.earlierHWM = o.earlierCPU+cpu, max(o.earlierHWM, hwm)
	o.proc.Stop(30 * time.Second)
	o.proc = nil
	return nil
}

// sample keeps the phase's RSS peak (every 100 ms).
func (o *operator) sample(pid int, stop chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		rss, _, err := procMem(pid)
		if err != nil {
			return
		}
		o.mu.Lock()
		o.phasePeak = max(o.phasePeak, rss)
		o.mu.Unlock()
	}
}

// phase closes a phase: what the operator used since the previous mark.
func (o *operator) phase(name string) phaseStats {
	pid := o.proc.Pid()
	rss, hwm, _ := procMem(pid)
	cpu, _ := procCPU(pid)
	counts := o.requests()
	o.mu.Lock()
	defer o.mu.Unlock()
	s := phaseStats{
		name: name, wall: time.Since(o.phaseStart), cpu: cpu - o.lastCPU,
		peakRSS: max(o.phasePeak, rss), hwm: hwm, requests: counts.sub(o.lastCounts),
	}
	o.lastCPU, o.lastCounts, o.phasePeak, o.phaseStart = cpu, counts, rss, time.Now()
	o.runs = append(o.runs, s)
	return s
}

// totals: the operator process so far.
func (o *operator) totals() phaseStats {
	pid := o.proc.Pid()
	_, hwm, _ := procMem(pid)
	cpu, _ := procCPU(pid)
	var peak int64
	for _, r := range o.runs {
		peak = max(peak, r.peakRSS)
	}
	return phaseStats{name: "total", cpu: o.earlierCPU + cpu, hwm: max(o.earlierHWM, hwm), peakRSS: peak, requests: o.earlier.add(o.requests())}
}

// requests is what the running operator has counted so far.
func (o *operator) requests() requestCounts {
	m, err := o.metrics()
	if err != nil {
		logf("operator metrics: %v (requests not counted)", err)
		return newRequestCounts()
	}
	return parseRequestCounts(m)
}

// procMem reads VmRSS and VmHWM in bytes.
func procMem(pid int) (rss, hwm int64, err error) {
	m, err := procStatus(pid)
	return m["VmRSS"], m["VmHWM"], err
}

// procStatus reads the memory lines of /proc/<pid>/status in bytes.
func procStatus(pid int) (map[string]int64, error) {
	out := map[string]int64{}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[2] != "kB" {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		out[strings.TrimSuffix(fields[0], ":")] = kb << 10
	}
	return out, sc.Err()
}

// procCPU reads utime+stime in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	fields := strings.Fields(s[i+2:])
	// utime and stime are fields 14 and 15 of the line, 12 and 13 here.
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / clockTicks, nil
}

// metrics scrapes the operator's /metrics into name{labels} → value.
func (o *operator) metrics() (map[string]float64, error) {
	resp, err := http.Get(o.metricsURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

// parseMetrics reads Prometheus' text format into name{labels} → value.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// queuesIdle: every kind's queue is empty and no item is being processed.
func (o *operator) queuesIdle() bool {
	m, err := o.metrics()
	if err != nil {
		return false
	}
	for k, v := range m {
		if (strings.HasPrefix(k, "workqueue_depth{") || strings.HasPrefix(k, "workqueue_unfinished_work_seconds{")) && v != 0 {
			return false
		}
	}
	return true
}

// startPerf samples the operator's stacks (perf record -g) until stopPerf.
func (o *operator) startPerf() error {
	if _, err := exec.LookPath("perf"); err != nil {
		return err
	}
	o.perfData = filepath.Join(o.logDir, "operator.perf.data")
	o.perfCmd = exec.Command("perf", "record", "-F", "499", "-g", "-o", o.perfData, "-p", strconv.Itoa(o.proc.Pid()))
	o.perfCmd.Stdout, o.perfCmd.Stderr = nil, nil
	return o.perfCmd.Start()
}

// stopPerf ends the recording and returns the hottest functions (self time)
// and the heaviest callers (inclusive time).
func (o *operator) stopPerf() string {
	if o.perfCmd == nil {
		return ""
	}
	_ = o.perfCmd.Process.Signal(syscall.SIGINT)
	_ = o.perfCmd.Wait()
	report := func(limit int, args ...string) string {
		out, err := exec.Command("perf", append([]string{"report", "-i", o.perfData, "--stdio", "--sort", "symbol", "-g", "none", "--percent-limit", "1.5"}, args...)...).Output()
		if err != nil {
			return err.Error()
		}
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
				continue
			}
			keep = append(keep, strings.TrimRight(strings.TrimRight(l, " -"), " "))
			if len(keep) == limit {
				break
			}
		}
		return strings.Join(keep, "\n")
	}
	return "Self time (perf report --no-children --sort symbol):\n" + report(20, "--no-children") +
		"\n\nInclusive time (perf report --children --sort symbol):\n" + report(40, "--children")
}

// buildPprofOperator builds cmd/cita-node-operator with test/bench/pprof
// laid over it: the same operator, serving net/http/pprof.
func buildPprofOperator(repo, workDir string) (string, error) {
	overlay := filepath.Join(workDir, "pprof-overlay.json")
	data := fmt.Sprintf(`{"Replace":{%q:%q}}`,
		filepath.Join(repo, "cmd/cita-node-operator/zz_bench_pprof.go"), filepath.Join(repo, "test/bench/pprof/pprof.go"))
	if err := os.WriteFile(overlay, []byte(data), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(workDir, "cita-node-operator-pprof")
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "benchpprof", "-overlay", overlay, "-o", bin, "./cmd/cita-node-operator")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the pprof operator: %v: %s", err, out)
	}
	return bin, nil
}

// pprofTop fetches a profile from the pprof operator and returns go tool
// pprof's top functions for it.
func (o *operator) pprofTop(profile, index, title string) string {
	if o.pprofURL == "" || o.proc == nil {
		return ""
	}
	resp, err := http.Get(o.pprofURL + profile)
	if err != nil {
		return title + ": " + err.Error()
	}
	defer resp.Body.Close()
	file := filepath.Join(o.logDir, fmt.Sprintf("operator-%d-%s.pprof", o.starts, strings.NewReplacer("?", "-", "=", "").Replace(profile)))
	f, err := os.Create(file)
	if err != nil {
		return title + ": " + err.Error()
	}
	if _, err := f.ReadFrom(resp.Body); err != nil {
		f.Close()
		return title + ": " + err.Error()
	}
	f.Close()
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=20", "-sample_index="+index, o.bin, file).CombinedOutput()
	if err != nil {
		return title + ": " + err.Error() + ": " + string(out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "flat") {
			lines = lines[max(i-1, 0):]
			break
		}
	}
	return fmt.Sprintf("#### %s (go tool pprof -top -sample_index=%s %s)\n\n```\n%s\n```", title, index, filepath.Base(file), strings.Join(lines, "\n"))
}
