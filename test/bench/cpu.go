//go:build linux

package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// cpuSnapshot is CPU seconds used so far: the whole machine (busy, from
// /proc/stat) and each process of interest (utime+stime).
type cpuSnapshot struct {
	busy, total float64
	procs       map[string]float64
}

// cpuUse is what a phase cost, by process; "rest" is the machine's busy
// time no listed process accounts for: the bench itself (its informers, the job
// runner) and the Job containers.
type cpuUse struct {
	busy, total float64
	procs       map[string]float64
}

func (e *env) cpuNow() cpuSnapshot {
	s := cpuSnapshot{procs: map[string]float64{}}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line := strings.SplitN(string(b), "\n", 2)[0]
		f := strings.Fields(line)
		var sum, idle float64
		for i, v := range f[1:] {
			x, _ := strconv.ParseFloat(v, 64)
			if i >= 8 { // guest time is already in user
				break
			}
			sum += x
			if i == 3 || i == 4 { // idle, iowait
				idle += x
			}
		}
		s.total, s.busy = sum/clockTicks, (sum-idle)/clockTicks
	}
	for _, pid := range e.cluster.PIDs() {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue
		}
		if cpu, err := procCPU(pid); err == nil {
			s.procs[strings.TrimSpace(string(comm))] += cpu
		}
	}
	if e.op != nil && e.op.proc != nil {
		if cpu, err := procCPU(e.op.proc.Pid()); err == nil {
			s.procs["cita-node-operator"] = cpu
		}
	}
	return s
}

func (s cpuSnapshot) since(earlier cpuSnapshot) cpuUse {
	u := cpuUse{busy: s.busy - earlier.busy, total: s.total - earlier.total, procs: map[string]float64{}}
	accounted := 0.0
	for k, v := range s.procs {
		d := v - earlier.procs[k]
		if k == "cita-node-operator" && earlier.procs[k] > v {
			d = v // restarted
		}
		u.procs[k] = d
		accounted += d
	}
	u.procs["rest (bench, job runner, Job containers)"] = u.busy - accounted
	return u
}

func (u cpuUse) sortedNames() []string {
	names := make([]string, 0, len(u.procs))
	for k := range u.procs {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return u.procs[names[i]] > u.procs[names[j]] })
	return names
}
