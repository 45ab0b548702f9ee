package nodeops

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"
)

func owner(kind, name string) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: "citacloud.rivtower.com/v1", Kind: kind, Name: name,
		UID: types.UID("uid-" + name), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}
}

func claimVolume(name, claim string, readOnly bool) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim, ReadOnly: readOnly}}}
}

func TestJob(t *testing.T) {
	cloudNode := &Node{Target: cloudTarget("node0"), DataClaim: "datadir-node0-0", ConfigMap: "node0-config", Crypto: "sm", Consensus: "overlord"}
	helmNode := &Node{Target: helmTarget("mychain", "mychain-1"), DataClaim: "mychain-data", DataSubPath: "mychain-1", Crypto: "eth", Consensus: "raft"}
	pythonNode := &Node{Target: pythonTarget("mychain", "node1"), DataClaim: "mychain-pvc", DataSubPath: "node1"}
	nodeVolume := func(n *Node) corev1.Volume { return claimVolume("node", n.DataClaim, false) }
	nodeMount := func(n *Node) corev1.VolumeMount {
		return corev1.VolumeMount{Name: "node", MountPath: jobargs.NodeRootMountPath, SubPath: n.DataSubPath}
	}
	configVolume := corev1.Volume{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "node0-config"}}}}
	configMount := corev1.VolumeMount{Name: "config", MountPath: jobargs.ConfigMountPath, ReadOnly: true}

	tests := map[string]struct {
		req        JobRequest
		wantVols   []corev1.Volume
		wantMounts []corev1.VolumeMount
	}{
		"backup of a cloud-config node: backup claim writable, no config (backup does not run cloud-op)": {
			req: JobRequest{
				Node: cloudNode, BackupClaim: "b1",
				Args: jobargs.Args{Op: jobargs.OpBackup, NodeRoot: jobargs.NodeRootMountPath, BackupPath: jobargs.BackupMountPath},
			},
			wantVols:   []corev1.Volume{nodeVolume(cloudNode), claimVolume("backup", "b1", false)},
			wantMounts: []corev1.VolumeMount{nodeMount(cloudNode), {Name: "backup", MountPath: jobargs.BackupMountPath}},
		},
		"restore of a helm node: node claim at its subPath, backup claim read-only": {
			req: JobRequest{
				Node: helmNode, BackupClaim: "b1", BackupReadOnly: true,
				Args: jobargs.Args{Op: jobargs.OpRestore, NodeRoot: jobargs.NodeRootMountPath, SourcePath: jobargs.BackupMountPath, DeleteConsensusData: true},
			},
			wantVols:   []corev1.Volume{nodeVolume(helmNode), claimVolume("backup", "b1", true)},
			wantMounts: []corev1.VolumeMount{nodeMount(helmNode), {Name: "backup", MountPath: jobargs.BackupMountPath, ReadOnly: true}},
		},
		"fallback of a cloud-config node: its config ConfigMap is mounted": {
			req: JobRequest{
				Node: cloudNode, Machine: "machine-a",
				Args: jobargs.Args{Op: jobargs.OpFallback, NodeRoot: jobargs.NodeRootMountPath, ConfigPath: cloudNode.ConfigPath(), BlockHeight: 100, Crypto: "sm", Consensus: "overlord"},
			},
			wantVols:   []corev1.Volume{nodeVolume(cloudNode), configVolume},
			wantMounts: []corev1.VolumeMount{nodeMount(cloudNode), configMount},
		},
		"snapshot of a cloud-config node: backup claim and config": {
			req: JobRequest{
				Node: cloudNode, BackupClaim: "snap1",
				Args: jobargs.Args{Op: jobargs.OpSnapshot, NodeRoot: jobargs.NodeRootMountPath, ConfigPath: cloudNode.ConfigPath(), BackupPath: jobargs.BackupMountPath, BlockHeight: 7, Crypto: "sm", Consensus: "overlord"},
			},
			wantVols:   []corev1.Volume{nodeVolume(cloudNode), claimVolume("backup", "snap1", false), configVolume},
			wantMounts: []corev1.VolumeMount{nodeMount(cloudNode), {Name: "backup", MountPath: jobargs.BackupMountPath}, configMount},
		},
		"snapshot-restore of a helm node: no ConfigMap, config is in the node root": {
			req: JobRequest{
				Node: helmNode, BackupClaim: "snap1", BackupReadOnly: true, Machine: "machine-1",
				Args: jobargs.Args{Op: jobargs.OpSnapshotRestore, NodeRoot: jobargs.NodeRootMountPath, ConfigPath: helmNode.ConfigPath(), SourcePath: jobargs.BackupMountPath, BlockHeight: 7, Crypto: "eth", Consensus: "raft"},
			},
			wantVols:   []corev1.Volume{nodeVolume(helmNode), claimVolume("backup", "snap1", true)},
			wantMounts: []corev1.VolumeMount{nodeMount(helmNode), {Name: "backup", MountPath: jobargs.BackupMountPath, ReadOnly: true}},
		},
		"chown of a python node: the node volume only": {
			req: JobRequest{
				Node: pythonNode,
				Args: jobargs.Args{Op: jobargs.OpChown, NodeRoot: jobargs.NodeRootMountPath, UID: 1000, GID: 1000, TerminationLog: "/tmp/result"},
			},
			wantVols:   []corev1.Volume{nodeVolume(pythonNode)},
			wantMounts: []corev1.VolumeMount{nodeMount(pythonNode)},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := tc.req
			r.Name, r.Namespace = "op-job", ns
			r.Owner = owner("Backup", "op")
			r.Image, r.Pull = "citacloud/cita-node-operator-job:v1", corev1.PullIfNotPresent
			r.ActiveDeadlineSeconds = 3600
			job := Job(r)

			if job.Name != "op-job" || job.Namespace != ns {
				t.Errorf("Job %s/%s, want %s/op-job", job.Namespace, job.Name, ns)
			}
			if diff := cmp.Diff([]metav1.OwnerReference{r.Owner}, job.OwnerReferences); diff != "" {
				t.Errorf("owner references (-want +got):\n%s", diff)
			}
			wantLabels := map[string]string{LabelOperationUID: "uid-op"}
			if diff := cmp.Diff(wantLabels, job.Labels); diff != "" {
				t.Errorf("Job labels (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantLabels, job.Spec.Template.Labels); diff != "" {
				t.Errorf("pod labels (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(ptr.To[int32](0), job.Spec.BackoffLimit); diff != "" {
				t.Errorf("backoffLimit (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(ptr.To[int64](3600), job.Spec.ActiveDeadlineSeconds); diff != "" {
				t.Errorf("activeDeadlineSeconds (-want +got):\n%s", diff)
			}
			if job.Spec.TTLSecondsAfterFinished != nil {
				t.Errorf("ttlSecondsAfterFinished = %d, want unset until the result is recorded", *job.Spec.TTLSecondsAfterFinished)
			}

			pod := job.Spec.Template.Spec
			if pod.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("restartPolicy = %q, want Never", pod.RestartPolicy)
			}
			if diff := cmp.Diff(ptr.To(false), pod.AutomountServiceAccountToken); diff != "" {
				t.Errorf("automountServiceAccountToken (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(ptr.To(false), pod.EnableServiceLinks); diff != "" {
				t.Errorf("enableServiceLinks (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantVols, pod.Volumes); diff != "" {
				t.Errorf("volumes (-want +got):\n%s", diff)
			}
			var wantAffinity *corev1.Affinity
			if r.Machine != "" {
				wantAffinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
						MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{r.Machine}}},
					}}},
				}}
			}
			if diff := cmp.Diff(wantAffinity, pod.Affinity); diff != "" {
				t.Errorf("affinity (-want +got):\n%s", diff)
			}

			if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
				t.Fatalf("%d containers, %d init containers, want 1 and 0", len(pod.Containers), len(pod.InitContainers))
			}
			c := pod.Containers[0]
			if c.Image != r.Image || c.ImagePullPolicy != r.Pull {
				t.Errorf("image %q %q, want %q %q", c.Image, c.ImagePullPolicy, r.Image, r.Pull)
			}
			if diff := cmp.Diff(tc.wantMounts, c.VolumeMounts); diff != "" {
				t.Errorf("volume mounts (-want +got):\n%s", diff)
			}
			if c.TerminationMessagePath != jobargs.DefaultTerminationLog || c.TerminationMessagePolicy != corev1.TerminationMessageReadFile {
				t.Errorf("termination message %q %q, want %q File", c.TerminationMessagePath, c.TerminationMessagePolicy, jobargs.DefaultTerminationLog)
			}
			wantSecurity := &corev1.SecurityContext{
				RunAsUser:                ptr.To[int64](0),
				RunAsNonRoot:             ptr.To(false),
				AllowPrivilegeEscalation: ptr.To(false),
				Capabilities: &corev1.Capabilities{
					Drop: []corev1.Capability{"ALL"},
					Add:  []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID"},
				},
			}
			if diff := cmp.Diff(wantSecurity, c.SecurityContext); diff != "" {
				t.Errorf("security context (-want +got):\n%s", diff)
			}
			if c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
				t.Error("the Job runs privileged")
			}

			// The binary reads back exactly the arguments the controller
			// meant, and every path it is given is inside a mounted volume.
			got, err := jobargs.Parse(c.Command)
			if err != nil {
				t.Fatalf("jobargs.Parse(%q): %v", c.Command, err)
			}
			if diff := cmp.Diff(r.Args, got); diff != "" {
				t.Errorf("parsed command (-want +got):\n%s", diff)
			}
			for _, p := range []string{got.NodeRoot, got.ConfigPath, got.SourcePath, got.BackupPath} {
				if p == "" || strings.HasPrefix(p, "/tmp/") {
					continue
				}
				mounted := false
				for _, m := range c.VolumeMounts {
					if p == m.MountPath || strings.HasPrefix(p, m.MountPath+"/") {
						mounted = true
					}
				}
				if !mounted {
					t.Errorf("path %q given to the job is in none of its mounts %v", p, c.VolumeMounts)
				}
			}
		})
	}
}

func TestJobName(t *testing.T) {
	long := strings.Repeat("a", 60)
	tests := map[string]struct {
		cr, suffix string
		want       string
	}{
		"short: unchanged": {cr: "b1", suffix: "backup", want: "b1-backup"},
		"exactly 63: unchanged": {
			cr: strings.Repeat("x", 63-len("-backup")), suffix: "backup",
			want: strings.Repeat("x", 56) + "-backup",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := JobName(tc.cr, tc.suffix); got != tc.want {
				t.Errorf("JobName(%q, %q) = %q, want %q", tc.cr, tc.suffix, got, tc.want)
			}
		})
	}

	shortened := map[string]struct{ cr, suffix string }{
		"one character too long":           {strings.Repeat("x", 57), "backup"},
		"long":                             {long + "-1", "backup"},
		"long, same prefix, other ending":  {long + "-2", "backup"},
		"a DNS subdomain of 253":           {strings.Repeat("abcdefghi.", 25) + "abc", "snapshot-restore"},
		"cut falls on a dash":              {strings.Repeat("a", 46) + "-------" + strings.Repeat("b", 20), "backup"},
		"cut falls on a dot":               {strings.Repeat("a", 46) + "." + strings.Repeat("b", 20), "backup"},
		"cut falls on a run of separators": {"a" + strings.Repeat("-", 60) + "z", "fallback"},
	}
	seen := map[string]string{}
	for name, tc := range shortened {
		t.Run(name, func(t *testing.T) {
			got := JobName(tc.cr, tc.suffix)
			if len(got) > 63 {
				t.Errorf("JobName = %q: %d characters, want at most 63", got, len(got))
			}
			if errs := validation.IsValidLabelValue(got); len(errs) != 0 {
				t.Errorf("JobName = %q is not a label value: %v", got, errs)
			}
			if errs := validation.IsDNS1123Subdomain(got); len(errs) != 0 {
				t.Errorf("JobName = %q is not a valid name: %v", got, errs)
			}
			if again := JobName(tc.cr, tc.suffix); again != got {
				t.Errorf("JobName not deterministic: %q then %q", got, again)
			}
			if !strings.HasSuffix(got, "-"+tc.suffix) {
				t.Errorf("JobName = %q lost its suffix %q", got, tc.suffix)
			}
			rest := strings.TrimSuffix(got, "-"+tc.suffix)
			i := strings.LastIndex(rest, "-")
			prefix, hash := rest[:i], rest[i+1:]
			if len(hash) != 8 {
				t.Errorf("JobName = %q: hash %q, want 8 hex characters", got, hash)
			}
			if strings.HasSuffix(prefix, "-") || strings.HasSuffix(prefix, ".") {
				t.Errorf("JobName = %q: prefix %q ends in a separator before the hash", got, prefix)
			}
			if !strings.HasPrefix(tc.cr, prefix) || prefix == "" {
				t.Errorf("JobName = %q: prefix %q is not a beginning of %q", got, prefix, tc.cr)
			}
			if other, dup := seen[got]; dup {
				t.Errorf("JobName = %q for both %q and %q", got, name, other)
			}
			seen[got] = name
		})
	}
	// Two long names sharing a 60-character prefix differ only past the cut.
	a, b := JobName(long+"-1", "backup"), JobName(long+"-2", "backup")
	if a == b {
		t.Errorf("JobName(%q) = JobName(%q) = %q", long+"-1", long+"-2", a)
	}
	// The same CR name with another kind's suffix is another Job.
	if x, y := JobName(long+"-1", "backup"), JobName(long+"-1", "restore"); x == y || strings.TrimSuffix(x, "-backup") == strings.TrimSuffix(y, "-restore") {
		t.Errorf("JobName for backup %q and restore %q share a hash", x, y)
	}
}

func TestBackupPVC(t *testing.T) {
	own := owner("Backup", "b1")
	rwx := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	tests := map[string]struct {
		req  BackupPVCRequest
		want corev1.PersistentVolumeClaimSpec
	}{
		"the node's class, size and access modes": {
			req: BackupPVCRequest{StorageClass: "local-path", Size: resource.MustParse("10Gi"), AccessModes: rwx},
			want: corev1.PersistentVolumeClaimSpec{
				StorageClassName: ptr.To("local-path"),
				AccessModes:      rwx,
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}},
			},
		},
		"no class: the cluster default (unset, not empty); no modes: ReadWriteOnce": {
			req: BackupPVCRequest{Size: resource.MustParse("500Mi")},
			want: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("500Mi")}},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := tc.req
			r.Name, r.Namespace, r.Owner = "b1", ns, own
			pvc := BackupPVC(r)
			wantMeta := metav1.ObjectMeta{
				Name: "b1", Namespace: ns,
				Labels:          map[string]string{LabelOperationUID: "uid-b1"},
				OwnerReferences: []metav1.OwnerReference{own},
			}
			if diff := cmp.Diff(wantMeta, pvc.ObjectMeta); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, pvc.Spec, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
}
