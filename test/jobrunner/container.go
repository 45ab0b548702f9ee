//go:build linux

package jobrunner

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
)

// helperEnv carries a containerSpec (JSON) to the re-executed runner binary:
// the process that sets up the container's mount namespace and then execs the
// container's command. See init.
const helperEnv = "CITA_JOBRUNNER_CONTAINER"

// helperArgv0 names the helper in ps until it execs the container command.
const helperArgv0 = "jobrunner-container"

// oPath is O_PATH (the same on amd64 and arm64), which package syscall lacks;
// golang.org/x/sys is not a direct dependency of the module.
const oPath = 0o10000000

// devFiles are the device nodes bound into the container's private /dev.
var devFiles = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}

// containerSpec is everything the helper does between unshare(CLONE_NEWNS) and
// execve: the mounts, then the command.
type containerSpec struct {
	Argv []string
	Env  []string
	// Path is the container's PATH, where Argv[0] is looked up.
	Path       string
	WorkingDir string
	UID, GID   *int64
	// TmpfsRoots are top-level directories, empty on the host, over which a
	// tmpfs is mounted so that mount points can be made below them.
	TmpfsRoots []string
	Mounts     []mountSpec
}

// mountSpec is one bind mount: a host path at the container path Target.
type mountSpec struct {
	Source   string
	Target   string
	ReadOnly bool
	// File: Source is a file (the termination log), Target is created as one.
	File bool
}

// init turns a binary that imports this package into the container helper
// when the runner re-executes it (/proc/self/exe) with helperEnv set. Nothing
// else in the binary runs: the helper never returns from here.
func init() {
	if spec, ok := os.LookupEnv(helperEnv); ok {
		os.Exit(containerMain(spec))
	}
}

// containerMain runs as PID 1 of a new PID namespace, in a fresh mount
// namespace with private propagation (the runner starts it with Cloneflags
// CLONE_NEWPID and Unshareflags CLONE_NEWNS, and Go remounts / MS_PRIVATE
// recursively). It reports a setup failure on fd 3, which closes on a
// successful exec, so the runner tells "could not start" from "ran and failed".
func containerMain(specJSON string) int {
	status := os.NewFile(3, "status")
	syscall.CloseOnExec(3)
	fail := func(err error) int {
		if status != nil {
			fmt.Fprint(status, err.Error())
		}
		fmt.Fprintf(os.Stderr, "jobrunner: starting the container: %v\n", err)
		return 128
	}
	var spec containerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fail(fmt.Errorf("bad container spec: %w", err))
	}
	if err := setUpMounts(&spec); err != nil {
		return fail(err)
	}
	wd := spec.WorkingDir
	if wd == "" {
		wd = "/"
	}
	if mayCreateUnder(wd, spec.TmpfsRoots) && !isUnder(wd, "/dev") {
		if err := os.MkdirAll(wd, 0o755); err != nil {
			return fail(fmt.Errorf("working directory: %w", err))
		}
	}
	if err := os.Chdir(wd); err != nil {
		return fail(fmt.Errorf("working directory: %w", err))
	}
	if len(spec.Argv) == 0 {
		return fail(errors.New("no command"))
	}
	bin := spec.Argv[0]
	if !strings.Contains(bin, "/") {
		os.Setenv("PATH", spec.Path)
		resolved, err := exec.LookPath(bin)
		if err != nil {
			return fail(fmt.Errorf("exec: %q: executable file not found in $PATH", bin))
		}
		bin = resolved
	}
	if spec.GID != nil {
		if err := syscall.Setgroups(nil); err != nil {
			return fail(fmt.Errorf("setgroups: %w", err))
		}
		if err := syscall.Setgid(int(*spec.GID)); err != nil {
			return fail(fmt.Errorf("setgid %d: %w", *spec.GID, err))
		}
	}
	if spec.UID != nil {
		if err := syscall.Setuid(int(*spec.UID)); err != nil {
			return fail(fmt.Errorf("setuid %d: %w", *spec.UID, err))
		}
	}
	err := syscall.Exec(bin, spec.Argv, spec.Env)
	return fail(fmt.Errorf("exec %s: %w", bin, err))
}

// setUpMounts builds the container's view of the file system inside the
// helper's mount namespace; nothing here is visible on the host.
//
// Every source is opened (O_PATH) before anything is mounted, and bound from
// /proc/self/fd/N, so that a tmpfs mounted over a directory cannot hide a source
// below it.
func setUpMounts(spec *containerSpec) error {
	// Go already made / recursively private when it unshared; say it again so
	// that no mount below can ever propagate back to the host.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private: %w", err)
	}
	openPath := func(p string) (string, func(), error) {
		fd, err := syscall.Open(p, oPath|syscall.O_CLOEXEC, 0)
		if err != nil {
			return "", nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		return fmt.Sprintf("/proc/self/fd/%d", fd), func() { syscall.Close(fd) }, nil
	}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	sources := make([]string, len(spec.Mounts))
	for i, m := range spec.Mounts {
		src, closeFn, err := openPath(m.Source)
		if err != nil {
			return err
		}
		closers = append(closers, closeFn)
		sources[i] = src
	}
	devSources := map[string]string{}
	for _, d := range devFiles {
		src, closeFn, err := openPath(d)
		if err != nil {
			continue // e.g. no /dev/tty: the container goes without
		}
		closers = append(closers, closeFn)
		devSources[d] = src
	}

	// A private /dev: the host's device nodes stay out of reach, and files
	// such as /dev/termination-log are made here, never in the host's /dev.
	if err := syscall.Mount("tmpfs", "/dev", "tmpfs", syscall.MS_NOSUID|syscall.MS_NOEXEC, "mode=755,size=1m"); err != nil {
		return fmt.Errorf("mounting a tmpfs on /dev: %w", err)
	}
	for d, src := range devSources {
		if err := bindAt(src, d, true, false); err != nil {
			return err
		}
	}
	for link, to := range map[string]string{
		"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(to, link); err != nil {
			return err
		}
	}
	if err := os.Mkdir("/dev/shm", 0o1777); err != nil {
		return err
	}
	if err := syscall.Mount("shm", "/dev/shm", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=1777,size=64m"); err != nil {
		return fmt.Errorf("mounting /dev/shm: %w", err)
	}

	for _, root := range spec.TmpfsRoots {
		if err := syscall.Mount("tmpfs", root, "tmpfs", syscall.MS_NOSUID, "mode=755"); err != nil {
			return fmt.Errorf("mounting a tmpfs on %s: %w", root, err)
		}
	}
	// Parents before children: a mount at /a/b must not hide one at /a/b/c.
	order := make([]int, len(spec.Mounts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return depth(spec.Mounts[order[a]].Target) < depth(spec.Mounts[order[b]].Target)
	})
	for _, i := range order {
		m := spec.Mounts[i]
		if !mayCreateUnder(m.Target, spec.TmpfsRoots) {
			if _, err := os.Stat(m.Target); err != nil {
				return fmt.Errorf("mount point %s: %w (the runner creates mount points only in /dev and below a tmpfs root %v)", m.Target, err, spec.TmpfsRoots)
			}
		}
		if err := bindAt(sources[i], m.Target, m.File, m.ReadOnly); err != nil {
			return err
		}
	}
	// Last, as the sources above are reached through /proc/self/fd: a /proc
	// of the container's PID namespace (ps sees only the container).
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		fmt.Fprintf(os.Stderr, "jobrunner: warning: the container sees the host's /proc: mounting its own: %v\n", err)
	}
	return nil
}

// bindAt bind-mounts src at target, creating target (a file or a directory) if
// needed, read-only when asked.
func bindAt(src, target string, file, readOnly bool) error {
	if file {
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	} else if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount(src, target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting at %s: %w", target, err)
	}
	if readOnly {
		if err := syscall.Mount("", target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("making %s read-only: %w", target, err)
		}
	}
	return nil
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }

// mayCreateUnder reports whether a mount point at target may be created: it is
// in the private /dev or below a tmpfs root, not on the host's file system.
func mayCreateUnder(target string, roots []string) bool {
	if isUnder(target, "/dev") {
		return true
	}
	for _, r := range roots {
		if isUnder(target, r) {
			return true
		}
	}
	return false
}

// isUnder: p is root or below it.
func isUnder(p, root string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// spawner starts containers from one OS thread locked for the runner's life:
// Pdeathsig fires when the thread that forked a child exits, and a Go thread
// may otherwise exit under a child at any time. Its end (close(requests))
// kills the containers it started, as the runner's exit does.
type spawner struct {
	requests chan spawnRequest
}

type spawnRequest struct {
	spec  *containerSpec
	out   io.Writer
	reply chan spawnReply
}

type spawnReply struct {
	cmd *exec.Cmd
	err error
}

func newSpawner() *spawner {
	s := &spawner{requests: make(chan spawnRequest)}
	go func() {
		// Never unlocked: when this goroutine returns, its thread exits.
		runtime.LockOSThread()
		for req := range s.requests {
			cmd, err := startContainer(req.spec, req.out)
			req.reply <- spawnReply{cmd, err}
		}
	}()
	return s
}

func (s *spawner) start(spec *containerSpec, out io.Writer) (*exec.Cmd, error) {
	reply := make(chan spawnReply, 1)
	s.requests <- spawnRequest{spec, out, reply}
	r := <-reply
	return r.cmd, r.err
}

func (s *spawner) stop() { close(s.requests) }

// startContainer re-executes the running binary as the helper in a new mount
// namespace and its own process group, and returns once the container command
// has been exec'd (or the helper failed: an error whose text is the reason).
func startContainer(spec *containerSpec, out io.Writer) (*exec.Cmd, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{helperArgv0},
		Env:        []string{helperEnv + "=" + string(js)},
		Stdout:     out,
		Stderr:     out,
		ExtraFiles: []*os.File{wr},
		SysProcAttr: &syscall.SysProcAttr{
			// The container's command is PID 1 of a PID namespace of its
			// own: when it dies, the kernel kills whatever it left (cloud-op,
			// a sleep), even when the runner itself was killed.
			Cloneflags:   syscall.CLONE_NEWPID,
			Unshareflags: syscall.CLONE_NEWNS,
			// Its own group: the runner kills the container with everything
			// it started (cloud-op, its children) at once.
			Setpgid: true,
			// Dies with the runner (the spawner's thread, which lives as
			// long as the runner or its process).
			Pdeathsig: syscall.SIGKILL,
		},
	}
	if err := cmd.Start(); err != nil {
		wr.Close()
		return nil, err
	}
	wr.Close()
	msg, _ := io.ReadAll(rd)
	if len(msg) > 0 {
		_ = cmd.Wait()
		return nil, &startError{msg: string(msg)}
	}
	return cmd, nil
}

// startError: the container command could not be started (kubelet: StartError).
type startError struct{ msg string }

func (e *startError) Error() string { return e.msg }
