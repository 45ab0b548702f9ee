//go:build linux

package jobrunner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
	"github.com/cita-cloud/cita-node-operator/test/localcluster"
)

// UnpullableImage: a container whose image contains this string never starts;
// its status says ErrImagePull, then ImagePullBackOff, as a kubelet's would.
const UnpullableImage = "unpullable"

// The kubelet's limits on a termination message read from logs
// (FallbackToLogsOnError).
const (
	fallbackLogLines = 80
	fallbackLogBytes = 2048
)

// errGone: the pod no longer exists (or is another pod by the same name).
var errGone = errors.New("pod gone")

// podRun is the runner's kubelet work for one pod, from binding to deletion.
type podRun struct {
	r    *Runner
	ns   string
	name string
	uid  types.UID

	mu         sync.Mutex
	info       Run
	grace      time.Duration
	deleteCh   chan struct{}
	deleteOnce sync.Once
	goneCh     chan struct{}
	goneOnce   sync.Once
}

func (r *Runner) newPodRun(pod *corev1.Pod) *podRun {
	return &podRun{
		r: r, ns: pod.Namespace, name: pod.Name, uid: pod.UID,
		info:     Run{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, seq: nextSeq()},
		deleteCh: make(chan struct{}),
		goneCh:   make(chan struct{}),
	}
}

func (p *podRun) snapshot() Run {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

func (p *podRun) record(f func(*Run)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.info)
}

// requestDelete: the pod has a deletionTimestamp.
func (p *podRun) requestDelete(grace time.Duration) {
	p.deleteOnce.Do(func() {
		p.mu.Lock()
		p.grace = grace
		p.mu.Unlock()
		close(p.deleteCh)
	})
}

// markGone: the pod was removed from the API (e.g. force-deleted).
func (p *podRun) markGone() {
	p.goneOnce.Do(func() { close(p.goneCh) })
}

func (p *podRun) logf(format string, args ...any) {
	p.r.opts.Logf("jobrunner: pod %s/%s: "+format, append([]any{p.ns, p.name}, args...)...)
}

// loop does for the pod what a kubelet would, then returns once the pod is
// deleted (or the runner stops).
func (p *podRun) loop(pod *corev1.Pod) {
	ctx := p.r.ctx
	switch {
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		// Finished before this runner saw it: only its deletion is left.
		p.waitDeleteAndFinalize()
		return
	case pod.Status.Phase == corev1.PodRunning:
		// Started by an earlier runner, whose process is gone with it.
		p.finishLost("the runner that started this container is gone")
		p.waitDeleteAndFinalize()
		return
	case len(pod.Spec.Containers) != 1 || len(pod.Spec.InitContainers) > 0:
		p.record(func(r *Run) { r.Finished, r.ExitCode, r.Reason = true, 128, "StartError" })
		p.writeTerminated(pod.Spec.Containers, nil, 128, "StartError", "jobrunner runs pods of exactly one container and no init containers", time.Time{})
		p.waitDeleteAndFinalize()
		return
	}
	c := pod.Spec.Containers[0]
	if strings.Contains(c.Image, UnpullableImage) {
		p.unpullable(c)
		return
	}

	var spec *containerSpec
	lastErr := ""
	for {
		var err error
		if spec, err = p.prepare(ctx, pod, &c); err == nil {
			break
		}
		if errors.Is(err, errGone) {
			return
		}
		if err.Error() != lastErr {
			lastErr = err.Error()
			p.logf("volumes not ready: %v", err)
			p.record(func(r *Run) { r.Waiting = "ContainerCreating" })
			p.writeWaiting(c, "ContainerCreating", "jobrunner: "+lastErr)
		}
		select {
		case <-p.deleteCh:
			p.finalize()
			return
		case <-p.goneCh:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	podDir := p.podDir()
	defer os.RemoveAll(podDir)
	select {
	case <-p.deleteCh:
		p.finalize()
		return
	case <-p.goneCh:
		return
	default:
	}

	logFile := filepath.Join(p.r.workDir, "logs", fmt.Sprintf("%s_%s_%s.log", p.ns, p.name, p.uid))
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.logf("%v", err)
		return
	}
	defer out.Close()
	p.r.mu.Lock()
	gen := p.r.cloudOp
	p.r.mu.Unlock()
	spec.Path = p.r.containerPath(gen)
	spec.Env = withDefaultEnv(spec.Env, "PATH", spec.Path)
	for _, e := range spec.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			spec.Path = v
		}
	}

	if hook := p.r.opts.BeforeStart; hook != nil {
		hook(p.ns, p.name)
	}
	startedAt := time.Now()
	cmd, err := p.r.spawner.start(spec, out)
	if err != nil {
		p.logf("container did not start: %v", err)
		p.record(func(r *Run) {
			r.LogFile, r.CloudOp, r.Finished, r.FinishedAt, r.ExitCode, r.Reason, r.Message = logFile, gen, true, time.Now(), 128, "StartError", err.Error()
		})
		p.writeTerminated([]corev1.Container{c}, nil, 128, "StartError", err.Error(), startedAt)
		p.waitDeleteAndFinalize()
		return
	}
	pid := cmd.Process.Pid
	containerID := fmt.Sprintf("jobrunner://%s-%d", p.uid, pid)
	p.r.mu.Lock()
	p.r.started++
	p.r.mu.Unlock()
	p.record(func(r *Run) {
		r.Started, r.PID, r.CloudOp, r.StartedAt, r.LogFile, r.Waiting = true, pid, gen, startedAt, logFile, ""
	})
	p.logf("started %s (pid %d, cloud-op %s)", strings.Join(spec.Argv, " "), pid, gen)
	if err := p.writeRunning(c, containerID, startedAt); err != nil && !errors.Is(err, errGone) {
		p.logf("writing status Running: %v", err)
	}

	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	killed := false
	signal := func(sig syscall.Signal) {
		// The group: cita-node-job, cloud-op and whatever they started.
		_ = syscall.Kill(-pid, sig)
	}
	deleteCh := p.deleteCh
	var killTimer <-chan time.Time
wait:
	for {
		select {
		case <-exited:
			break wait
		case <-deleteCh:
			deleteCh = nil
			killed = true
			p.mu.Lock()
			grace := p.grace
			p.mu.Unlock()
			if grace <= 0 {
				p.logf("deleted: killing the container")
				signal(syscall.SIGKILL)
				continue
			}
			p.logf("deleted: stopping the container (SIGTERM, SIGKILL after %s)", grace)
			signal(syscall.SIGTERM)
			killTimer = time.After(grace)
		case <-killTimer:
			signal(syscall.SIGKILL)
		case <-p.goneCh:
			killed = true
			signal(syscall.SIGKILL)
		case <-ctx.Done():
			killed = true
			signal(syscall.SIGKILL)
		}
	}
	// As a kubelet tears down the container's cgroup: nothing it started
	// outlives it.
	signal(syscall.SIGKILL)
	finishedAt := time.Now()
	code := exitCode(cmd.ProcessState)
	msg := readTerminationMessage(filepath.Join(podDir, "termination-log"))
	if msg == "" && code != 0 && c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		msg = logTail(logFile)
	}
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	p.record(func(r *Run) {
		r.Finished, r.FinishedAt, r.ExitCode, r.Reason, r.Message, r.Killed = true, finishedAt, code, reason, msg, killed
	})
	p.logf("exited with code %d after %s", code, finishedAt.Sub(startedAt).Round(time.Millisecond))
	if ctx.Err() != nil {
		return
	}
	select {
	case <-p.goneCh:
		return
	default:
	}
	st := &corev1.ContainerStateTerminated{
		ExitCode: int32(code), Reason: reason, Message: msg, ContainerID: containerID,
		StartedAt: metav1.NewTime(startedAt), FinishedAt: metav1.NewTime(finishedAt),
	}
	if err := p.writeTerminated([]corev1.Container{c}, st, code, reason, msg, startedAt); err != nil && !errors.Is(err, errGone) {
		p.logf("writing the final status: %v", err)
	}
	p.waitDeleteAndFinalize()
}

// unpullable plays a kubelet that cannot pull the image: the container waits
// forever, ErrImagePull then ImagePullBackOff, and never runs.
func (p *podRun) unpullable(c corev1.Container) {
	p.logf("image %s is unpullable: not running it", c.Image)
	p.record(func(r *Run) { r.Waiting = "ErrImagePull" })
	p.writeWaiting(c, "ErrImagePull", fmt.Sprintf("failed to pull and unpack image %q: %s: not found", c.Image, c.Image))
	select {
	case <-p.deleteCh:
		p.finalize()
		return
	case <-p.goneCh:
		return
	case <-p.r.ctx.Done():
		return
	case <-time.After(time.Second):
	}
	p.record(func(r *Run) { r.Waiting = "ImagePullBackOff" })
	p.writeWaiting(c, "ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q", c.Image))
	p.waitDeleteAndFinalize()
}

func (p *podRun) waitDeleteAndFinalize() {
	select {
	case <-p.deleteCh:
		p.finalize()
	case <-p.goneCh:
	case <-p.r.ctx.Done():
	}
}

// finalize is the kubelet's end of a deleted pod: a terminal phase first (a
// container that never ran or whose end is unknown counts as failed), then the
// deletion with a grace period of 0.
func (p *podRun) finalize() {
	if p.r.ctx.Err() != nil {
		return
	}
	select {
	case <-p.goneCh:
		return
	default:
	}
	p.finishLost("The container could not be located when the pod was terminated")
	err := p.r.client.CoreV1().Pods(p.ns).Delete(p.r.ctx, p.name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &p.uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		p.logf("deleting: %v", err)
		return
	}
	p.logf("deleted")
}

// finishLost makes a pod that is not terminal Failed, its containers
// terminated with 137 ContainerStatusUnknown, as a kubelet does for containers
// it cannot account for.
func (p *podRun) finishLost(msg string) {
	err := p.updateStatus(func(pod *corev1.Pod) bool {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			return false
		}
		now := metav1.Now()
		statuses := containerStatuses(pod.Spec.Containers, pod.Status.ContainerStatuses)
		for i := range statuses {
			if statuses[i].State.Terminated != nil {
				continue
			}
			statuses[i].LastTerminationState = corev1.ContainerState{}
			statuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 137, Reason: "ContainerStatusUnknown", Message: msg, FinishedAt: now,
			}}
			statuses[i].Ready, statuses[i].Started = false, ptr.To(false)
		}
		pod.Status.ContainerStatuses = statuses
		pod.Status.Phase = corev1.PodFailed
		setTerminalConditions(&pod.Status)
		return true
	})
	if err != nil && !errors.Is(err, errGone) {
		p.logf("writing status Failed: %v", err)
	}
}

func (p *podRun) writeWaiting(c corev1.Container, reason, msg string) {
	err := p.updateStatus(func(pod *corev1.Pod) bool {
		st := &pod.Status
		if st.StartTime == nil {
			st.StartTime = ptr.To(metav1.Now())
		}
		setHostIP(st)
		setCondition(st, corev1.PodReadyToStartContainers, corev1.ConditionTrue, "")
		setCondition(st, corev1.PodInitialized, corev1.ConditionTrue, "")
		setCondition(st, corev1.ContainersReady, corev1.ConditionFalse, "ContainersNotReady")
		setCondition(st, corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady")
		st.ContainerStatuses = []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, Started: ptr.To(false),
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
		}}
		return true
	})
	if err != nil && !errors.Is(err, errGone) {
		p.logf("writing status %s: %v", reason, err)
	}
}

func (p *podRun) writeRunning(c corev1.Container, containerID string, startedAt time.Time) error {
	return p.updateStatus(func(pod *corev1.Pod) bool {
		st := &pod.Status
		st.Phase = corev1.PodRunning
		if st.StartTime == nil {
			st.StartTime = ptr.To(metav1.NewTime(startedAt))
		}
		setHostIP(st)
		for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			setCondition(st, t, corev1.ConditionTrue, "")
		}
		st.ContainerStatuses = []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID,
			Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(startedAt)}},
		}}
		return true
	})
}

// writeTerminated writes the final status: Succeeded for exit code 0, else
// Failed. term is the container's terminated state (nil: one is made from
// code, reason and msg, for a container that never ran).
func (p *podRun) writeTerminated(containers []corev1.Container, term *corev1.ContainerStateTerminated, code int, reason, msg string, startedAt time.Time) error {
	return p.updateStatus(func(pod *corev1.Pod) bool {
		st := &pod.Status
		if st.StartTime == nil {
			st.StartTime = ptr.To(metav1.Now())
		}
		setHostIP(st)
		statuses := make([]corev1.ContainerStatus, 0, len(containers))
		for _, c := range containers {
			t := term
			if t == nil {
				t = &corev1.ContainerStateTerminated{ExitCode: int32(code), Reason: reason, Message: msg, FinishedAt: metav1.Now()}
				if !startedAt.IsZero() {
					t.StartedAt = metav1.NewTime(startedAt)
				}
			}
			cs := corev1.ContainerStatus{
				Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: t.ContainerID,
				Started: ptr.To(false), State: corev1.ContainerState{Terminated: t},
			}
			statuses = append(statuses, cs)
		}
		st.ContainerStatuses = statuses
		st.Phase = corev1.PodFailed
		if code == 0 {
			st.Phase = corev1.PodSucceeded
		}
		setTerminalConditions(st)
		return true
	})
}

// updateStatus applies mutate to the pod's current state and writes its
// status, retrying conflicts and transient errors. mutate returns false when
// there is nothing to write. errGone once the pod (this UID) is gone.
func (p *podRun) updateStatus(mutate func(*corev1.Pod) bool) error {
	ctx := p.r.ctx
	pods := p.r.client.CoreV1().Pods(p.ns)
	backoff := 100 * time.Millisecond
	for {
		pod, err := pods.Get(ctx, p.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && pod.UID != p.uid) {
			return errGone
		}
		if err == nil {
			if !mutate(pod) {
				return nil
			}
			_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
			if err == nil {
				return nil
			}
			if apierrors.IsNotFound(err) {
				return errGone
			}
			if apierrors.IsConflict(err) {
				continue
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-p.goneCh:
			return errGone
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

func setCondition(st *corev1.PodStatus, typ corev1.PodConditionType, status corev1.ConditionStatus, reason string) {
	now := metav1.Now()
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != typ {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason = status, reason
		return
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: typ, Status: status, Reason: reason, LastTransitionTime: now})
}

func setTerminalConditions(st *corev1.PodStatus) {
	setCondition(st, corev1.PodReadyToStartContainers, corev1.ConditionFalse, "")
	setCondition(st, corev1.ContainersReady, corev1.ConditionFalse, "PodCompleted")
	setCondition(st, corev1.PodReady, corev1.ConditionFalse, "PodCompleted")
}

// setHostIP: kwok's nodes have the address 127.0.0.1 (--node-ip).
func setHostIP(st *corev1.PodStatus) {
	if st.HostIP == "" {
		st.HostIP = "127.0.0.1"
		st.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	}
}

func imageID(image string) string { return "jobrunner://" + image }

// containerStatuses returns one status per container, the existing ones kept.
func containerStatuses(containers []corev1.Container, have []corev1.ContainerStatus) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, 0, len(containers))
	for _, c := range containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
		for _, h := range have {
			if h.Name == c.Name {
				cs = *h.DeepCopy()
			}
		}
		out = append(out, cs)
	}
	return out
}

// exitCode as a kubelet reports it: 128+n for a process killed by signal n.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return 137
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// readTerminationMessage reads at most jobargs.MaxResultBytes (the kubelet's
// limit) of the termination-log file.
func readTerminationMessage(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, jobargs.MaxResultBytes))
	return string(b)
}

// logTail is the kubelet's FallbackToLogsOnError message: the last 80 lines
// of the log, at most 2 KiB.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.SplitAfter(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > fallbackLogLines {
		lines = lines[len(lines)-fallbackLogLines:]
	}
	s := strings.Join(lines, "")
	if len(s) > fallbackLogBytes {
		s = s[len(s)-fallbackLogBytes:]
	}
	return s
}

func (p *podRun) podDir() string { return filepath.Join(p.r.workDir, "pods", string(p.uid)) }

// prepare resolves the container's volumes, termination log, command and
// environment into what the helper mounts and execs. Host directories it makes
// (the per-pod files; a missing top-level mount root such as /cita) are
// reported.
func (p *podRun) prepare(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (*containerSpec, error) {
	dir := p.podDir()
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	env, err := containerEnv(pod, c)
	if err != nil {
		return nil, err
	}
	envMap := map[string]string{}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		envMap[k] = v
	}
	spec := &containerSpec{Env: env, WorkingDir: c.WorkingDir}
	plan := &mountPlan{protect: p.r.protect, logf: p.r.opts.Logf}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			return nil, fmt.Errorf("volume mount %q names no volume of the pod", m.Name)
		}
		src, ro, err := p.volumeSource(ctx, pod, v, filepath.Join(dir, "volumes", v.Name))
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = expandVars(m.SubPathExpr, envMap)
		}
		if sub != "" {
			if !filepath.IsLocal(sub) {
				return nil, fmt.Errorf("volume %q: subPath %q leaves the volume", v.Name, sub)
			}
			src = filepath.Join(src, sub)
			// The kubelet makes a missing subPath a directory.
			if _, err := os.Lstat(src); os.IsNotExist(err) {
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, err
				}
			}
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		target, err := plan.target(m.MountPath)
		if err != nil {
			return nil, err
		}
		spec.Mounts = append(spec.Mounts, mountSpec{Source: src, Target: target, ReadOnly: ro || m.ReadOnly, File: !fi.IsDir()})
	}
	termPath := c.TerminationMessagePath
	if termPath == "" {
		termPath = jobargs.DefaultTerminationLog
	}
	termFile := filepath.Join(dir, "termination-log")
	// Writable by whatever user the container runs as.
	if err := os.WriteFile(termFile, nil, 0o666); err != nil {
		return nil, err
	}
	if err := os.Chmod(termFile, 0o666); err != nil {
		return nil, err
	}
	target, err := plan.target(termPath)
	if err != nil {
		return nil, err
	}
	spec.Mounts = append(spec.Mounts, mountSpec{Source: termFile, Target: target, File: true})
	spec.TmpfsRoots = plan.roots
	sort.Strings(spec.TmpfsRoots)
	if spec.WorkingDir != "" {
		// Resolved like a mount path; a missing one is made (runc does).
		if spec.WorkingDir, err = plan.target(spec.WorkingDir); err != nil {
			return nil, fmt.Errorf("working directory: %w", err)
		}
		spec.TmpfsRoots = plan.roots
		sort.Strings(spec.TmpfsRoots)
	}

	if len(c.Command) == 0 {
		return nil, errors.New("the container has no command: the runner has no image entrypoint to fall back on")
	}
	for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
		spec.Argv = append(spec.Argv, expandVars(a, envMap))
	}
	spec.UID, spec.GID = runAs(pod, c)
	return spec, nil
}

// volumeSource is the host path a volume is bound from, and whether it is
// read-only. ConfigMaps, Secrets and emptyDirs are made in dir.
func (p *podRun) volumeSource(ctx context.Context, pod *corev1.Pod, v corev1.Volume, dir string) (string, bool, error) {
	switch {
	case v.PersistentVolumeClaim != nil:
		src, err := localcluster.VolumeDir(ctx, p.r.client, pod.Namespace, v.PersistentVolumeClaim.ClaimName)
		return src, v.PersistentVolumeClaim.ReadOnly, err
	case v.ConfigMap != nil:
		cm, err := p.r.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
		data := map[string][]byte{}
		switch {
		case apierrors.IsNotFound(err) && ptr.Deref(v.ConfigMap.Optional, false):
		case err != nil:
			return "", false, fmt.Errorf("configmap %q: %w", v.ConfigMap.Name, err)
		default:
			for k, s := range cm.Data {
				data[k] = []byte(s)
			}
			for k, b := range cm.BinaryData {
				data[k] = b
			}
		}
		return dir, true, writeKeys(dir, data, v.ConfigMap.Items, v.ConfigMap.DefaultMode, ptr.Deref(v.ConfigMap.Optional, false))
	case v.Secret != nil:
		s, err := p.r.client.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
		data := map[string][]byte{}
		switch {
		case apierrors.IsNotFound(err) && ptr.Deref(v.Secret.Optional, false):
		case err != nil:
			return "", false, fmt.Errorf("secret %q: %w", v.Secret.SecretName, err)
		default:
			data = s.Data
		}
		return dir, true, writeKeys(dir, data, v.Secret.Items, v.Secret.DefaultMode, ptr.Deref(v.Secret.Optional, false))
	case v.Projected != nil:
		return dir, true, p.writeProjected(ctx, pod, v.Projected, dir)
	case v.DownwardAPI != nil:
		data := map[string][]byte{}
		var items []corev1.KeyToPath
		for _, it := range v.DownwardAPI.Items {
			b, err := downwardValue(pod, it)
			if err != nil {
				return "", false, err
			}
			data[it.Path] = b
			items = append(items, corev1.KeyToPath{Key: it.Path, Path: it.Path, Mode: it.Mode})
		}
		return dir, true, writeKeys(dir, data, items, v.DownwardAPI.DefaultMode, false)
	case v.EmptyDir != nil:
		return dir, false, os.MkdirAll(dir, 0o777)
	case v.HostPath != nil:
		if t := ptr.Deref(v.HostPath.Type, ""); t == corev1.HostPathDirectoryOrCreate {
			if err := os.MkdirAll(v.HostPath.Path, 0o755); err != nil {
				return "", false, err
			}
		}
		return v.HostPath.Path, false, nil
	}
	return "", false, errors.New("unsupported volume type (the runner knows persistentVolumeClaim, configMap, secret, projected, downwardAPI, emptyDir, hostPath)")
}

// writeProjected writes a projected volume: ConfigMaps, Secrets, downward API
// items and a service account token from the TokenRequest API (what a pod's
// kube-api-access volume holds).
func (p *podRun) writeProjected(ctx context.Context, pod *corev1.Pod, v *corev1.ProjectedVolumeSource, dir string) error {
	for _, src := range v.Sources {
		data := map[string][]byte{}
		var items []corev1.KeyToPath
		optional := false
		switch {
		case src.ConfigMap != nil:
			optional = ptr.Deref(src.ConfigMap.Optional, false)
			cm, err := p.r.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, src.ConfigMap.Name, metav1.GetOptions{})
			if err != nil && !(apierrors.IsNotFound(err) && optional) {
				return fmt.Errorf("configmap %q: %w", src.ConfigMap.Name, err)
			}
			if err == nil {
				for k, s := range cm.Data {
					data[k] = []byte(s)
				}
				for k, b := range cm.BinaryData {
					data[k] = b
				}
			}
			items = src.ConfigMap.Items
		case src.Secret != nil:
			optional = ptr.Deref(src.Secret.Optional, false)
			sec, err := p.r.client.CoreV1().Secrets(pod.Namespace).Get(ctx, src.Secret.Name, metav1.GetOptions{})
			if err != nil && !(apierrors.IsNotFound(err) && optional) {
				return fmt.Errorf("secret %q: %w", src.Secret.Name, err)
			}
			if err == nil {
				data = sec.Data
			}
			items = src.Secret.Items
		case src.DownwardAPI != nil:
			for _, it := range src.DownwardAPI.Items {
				b, err := downwardValue(pod, it)
				if err != nil {
					return err
				}
				data[it.Path] = b
				items = append(items, corev1.KeyToPath{Key: it.Path, Path: it.Path, Mode: it.Mode})
			}
		case src.ServiceAccountToken != nil:
			sa := pod.Spec.ServiceAccountName
			if sa == "" {
				sa = "default"
			}
			req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
				ExpirationSeconds: src.ServiceAccountToken.ExpirationSeconds,
				BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
			}}
			if a := src.ServiceAccountToken.Audience; a != "" {
				req.Spec.Audiences = []string{a}
			}
			tok, err := p.r.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("service account token of %q: %w", sa, err)
			}
			data["token"] = []byte(tok.Status.Token)
			items = []corev1.KeyToPath{{Key: "token", Path: src.ServiceAccountToken.Path}}
		default:
			return errors.New("unsupported projected volume source")
		}
		if err := writeKeys(dir, data, items, v.DefaultMode, optional); err != nil {
			return err
		}
	}
	return nil
}

// downwardValue is one downward API file's content.
func downwardValue(pod *corev1.Pod, it corev1.DownwardAPIVolumeFile) ([]byte, error) {
	if it.FieldRef == nil {
		return nil, fmt.Errorf("downward API %s: only fieldRef is supported by the runner", it.Path)
	}
	switch it.FieldRef.FieldPath {
	case "metadata.labels", "metadata.annotations":
		m := pod.Labels
		if it.FieldRef.FieldPath == "metadata.annotations" {
			m = pod.Annotations
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%q\n", k, m[k])
		}
		return []byte(b.String()), nil
	}
	v, err := fieldValue(pod, it.FieldRef.FieldPath)
	return []byte(v), err
}

// fieldValue resolves the fieldRefs the runner knows.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return "127.0.0.1", nil
	}
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(k, "']")], nil
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(k, "']")], nil
	}
	return "", fmt.Errorf("fieldRef %s is not supported by the runner", path)
}

// writeKeys writes a ConfigMap's or Secret's keys as files, as the kubelet
// projects them (all keys, or only items at their paths).
func writeKeys(dir string, data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32, optional bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mode := os.FileMode(ptr.Deref(defaultMode, 0o644))
	if len(items) == 0 {
		for k := range data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("key %q not found", it.Key)
		}
		if !filepath.IsLocal(it.Path) {
			return fmt.Errorf("item path %q leaves the volume", it.Path)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		path := filepath.Join(dir, it.Path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, b, m); err != nil {
			return err
		}
		if err := os.Chmod(path, m); err != nil {
			return err
		}
	}
	return nil
}

// containerEnv is the container's environment: HOSTNAME and HOME as a
// container runtime sets them, then env (values and the common fieldRefs).
// PATH is added by the caller unless env sets it.
func containerEnv(pod *corev1.Pod, c *corev1.Container) ([]string, error) {
	if len(c.EnvFrom) > 0 {
		return nil, errors.New("envFrom is not supported by the runner")
	}
	env := []string{"HOSTNAME=" + pod.Name, "HOME=/root"}
	vars := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			f := e.ValueFrom.FieldRef
			if f == nil {
				return nil, fmt.Errorf("env %s: only fieldRef is supported by the runner", e.Name)
			}
			var err error
			if v, err = fieldValue(pod, f.FieldPath); err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
		} else {
			v = expandVars(v, vars)
		}
		vars[e.Name] = v
		env = setEnv(env, e.Name, v)
	}
	return env, nil
}

// setEnv sets name=value in env, replacing an earlier value.
func setEnv(env []string, name, value string) []string {
	for i, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			env[i] = name + "=" + value
			return env
		}
	}
	return append(env, name+"="+value)
}

// withDefaultEnv adds name=value unless env sets name.
func withDefaultEnv(env []string, name, value string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return env
		}
	}
	return append(env, name+"="+value)
}

// expandVars does Kubernetes' $(VAR) expansion ($$ escapes a $); unknown
// references stay as written.
func expandVars(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				name := s[i+2 : i+2+end]
				if v, ok := vars[name]; ok {
					b.WriteString(v)
					i += 2 + end
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// runAs is the container's user and group: its securityContext, else the pod's.
func runAs(pod *corev1.Pod, c *corev1.Container) (uid, gid *int64) {
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	return uid, gid
}

func dirEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err == io.EOF {
		return true, nil
	}
	return len(names) == 0, err
}
