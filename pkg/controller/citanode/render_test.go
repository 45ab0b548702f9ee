package citanode

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops/nodetest"
)

const (
	ns    = "chains"
	chain = "test-chain"
	node  = "test-chain-node0"
)

// citaNode is a CitaNode as the apiserver stores it for the node cloud-config
// names test-chain-node0 (chain test-chain, domain node0), with the storage
// the expected YAML below was generated with (--storage-class nfs-client,
// the default --access-mode ReadWriteMany and --storage-capacity 10Gi).
func citaNode(consensus citav1.ConsensusKind, mutate ...func(*citav1.CitaNode)) *citav1.CitaNode {
	cn := &citav1.CitaNode{
		ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: ns, UID: "uid-cn"},
		Spec: citav1.CitaNodeSpec{
			ChainName: chain,
			Consensus: consensus,
			Storage: citav1.NodeStorage{
				StorageClassName: ptr.To("nfs-client"),
				Size:             ptr.To(resource.MustParse("10Gi")),
				AccessMode:       corev1.ReadWriteMany,
			},
		},
	}
	for _, m := range mutate {
		m(cn)
	}
	return cn
}

// cloudConfigStatefulSet is the statefulset.yaml cloud-config 6.7.4's
// update-yaml writes (src/update_yaml.rs) for test-chain-node0, with the
// micro_service_list of the chosen consensus at v6.7.4 and every option at
// its default but --storage-class nfs-client.
const cloudConfigStatefulSet = `
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: test-chain-node0
  labels:
    app.kubernetes.io/chain-name: test-chain
    app.kubernetes.io/chain-node: test-chain-node0
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/chain-name: test-chain
      app.kubernetes.io/chain-node: test-chain-node0
  serviceName: ""
  volumeClaimTemplates:
  - metadata:
      name: datadir
    spec:
      accessModes: [ReadWriteMany]
      resources:
        requests:
          storage: 10Gi
      storageClassName: nfs-client
  template:
    metadata:
      labels:
        app.kubernetes.io/chain-name: test-chain
        app.kubernetes.io/chain-node: test-chain-node0
    spec:
      securityContext:
        runAsUser: 1000
        runAsGroup: 1000
        fsGroup: 1000
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector:
                matchExpressions:
                - key: app.kubernetes.io/chain-name
                  operator: In
                  values: [test-chain]
      containers:
      - name: network
        image: docker.io/citacloud/network_zenoh:v6.7.4
        imagePullPolicy: IfNotPresent
        command: [network, run, -c, /etc/cita-cloud/config/config.toml]
        ports:
        - {containerPort: 40000, name: network, protocol: UDP}
        - {containerPort: 50000, name: grpc, protocol: TCP}
        volumeMounts:
        - {mountPath: /data, name: datadir}
        - {mountPath: /etc/cita-cloud/config, name: node-config}
        - {mountPath: /mnt, name: node-account}
        - {mountPath: /etc/localtime, name: node-localtime}
        workingDir: /data
        livenessProbe:
          exec:
            command: [grpc-health-probe, -addr=localhost:50000]
          initialDelaySeconds: 30
          periodSeconds: 10
        resources: &resources
          requests: {cpu: 10m, memory: 32Mi}
          limits: {cpu: 4000m, memory: 8192Mi}
      - name: consensus
        image: CONSENSUS_IMAGE
        imagePullPolicy: IfNotPresent
        command: CONSENSUS_COMMAND
        ports:
        - {containerPort: 50001, name: grpc, protocol: TCP}
        volumeMounts:
        - {mountPath: /data, name: datadir}
        - {mountPath: /etc/cita-cloud/config, name: node-config}
        - {mountPath: /mnt, name: node-account}
        - {mountPath: /etc/localtime, name: node-localtime}
        workingDir: /data
        livenessProbe:
          exec:
            command: [grpc-health-probe, -addr=localhost:50001]
          initialDelaySeconds: 30
          periodSeconds: 10
        resources: *resources
      - name: executor
        image: docker.io/citacloud/executor_evm:v6.7.4
        imagePullPolicy: IfNotPresent
        command: [executor, run, -c, /etc/cita-cloud/config/config.toml]
        ports:
        - {containerPort: 50002, name: grpc, protocol: TCP}
        volumeMounts:
        - {mountPath: /data, name: datadir}
        - {mountPath: /etc/cita-cloud/config, name: node-config}
        - {mountPath: /etc/localtime, name: node-localtime}
        workingDir: /data
        livenessProbe:
          exec:
            command: [grpc-health-probe, -addr=localhost:50002]
          initialDelaySeconds: 30
          periodSeconds: 10
        resources: *resources
      - name: storage
        image: docker.io/citacloud/storage_opendal:v6.7.4
        imagePullPolicy: IfNotPresent
        command: [storage, run, -c, /etc/cita-cloud/config/config.toml]
        ports:
        - {containerPort: 50003, name: grpc, protocol: TCP}
        volumeMounts:
        - {mountPath: /data, name: datadir}
        - {mountPath: /etc/cita-cloud/config, name: node-config}
        - {mountPath: /etc/localtime, name: node-localtime}
        workingDir: /data
        livenessProbe:
          exec:
            command: [grpc-health-probe, -addr=localhost:50003]
          initialDelaySeconds: 30
          periodSeconds: 10
        resources: *resources
      - name: controller
        image: docker.io/citacloud/controller_hsm:v6.7.4
        imagePullPolicy: IfNotPresent
        command: [controller, run, -c, /etc/cita-cloud/config/config.toml, -p, /mnt/private_key]
        ports:
        - {containerPort: 50004, name: grpc, protocol: TCP}
        volumeMounts:
        - {mountPath: /data, name: datadir}
        - {mountPath: /etc/cita-cloud/config, name: node-config}
        - {mountPath: /mnt, name: node-account}
        - {mountPath: /etc/localtime, name: node-localtime}
        workingDir: /data
        livenessProbe:
          exec:
            command: [grpc-health-probe, -addr=localhost:50004]
          initialDelaySeconds: 60
          periodSeconds: 10
        resources: *resources
      volumes:
      - name: node-account
        configMap: {name: test-chain-node0-account}
      - name: node-config
        configMap: {name: test-chain-node0-config}
      - name: node-localtime
        hostPath: {path: /etc/localtime}
`

// cloudConfigService is update-yaml's node-svc.yaml for test-chain-node0.
const cloudConfigService = `
apiVersion: v1
kind: Service
metadata:
  name: test-chain-node0
  labels:
    app.kubernetes.io/chain-name: test-chain
    app.kubernetes.io/chain-node: test-chain-node0
spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/chain-name: test-chain
    app.kubernetes.io/chain-node: test-chain-node0
  ports:
  - {name: network, port: 40000, targetPort: 40000, protocol: UDP}
  - {name: rpc, port: 50004, targetPort: 50004, protocol: TCP}
  - {name: call, port: 50002, targetPort: 50002, protocol: TCP}
`

// What update-yaml writes for the peers of test-chain-node0 outside its
// namespace: node1 in another namespace of the same cluster (an
// ExternalName to its Service there), node2 in another cluster behind
// 192.0.2.7:30002 (a selector-less Service and its EndpointSlice).
const (
	cloudConfigHostPeer = `
apiVersion: v1
kind: Service
metadata:
  name: test-chain-node1
spec:
  type: ExternalName
  externalName: test-chain-node1.other.svc.cluster.local
`
	cloudConfigIPPeer = `
apiVersion: v1
kind: Service
metadata:
  name: test-chain-node2
spec:
  ports:
  - {name: network, port: 40000, targetPort: 30002, protocol: UDP}
`
	cloudConfigIPPeerSlice = `
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: test-chain-node2-1
  labels:
    kubernetes.io/service-name: test-chain-node2
addressType: IPv4
ports:
- {port: 30002, protocol: UDP}
endpoints:
- addresses: [192.0.2.7]
  conditions: {ready: true}
`
)

func consensusShape(k citav1.ConsensusKind) (image, command string) {
	if k == citav1.ConsensusOverlord {
		return "docker.io/citacloud/consensus_overlord:v6.7.4", "[consensus, run, -c, /etc/cita-cloud/config/config.toml, -p, /mnt/private_key]"
	}
	return "docker.io/citacloud/consensus_raft:v6.7.4", "[consensus, run, -c, /etc/cita-cloud/config/config.toml, --stdout]"
}

func parse[T any](t *testing.T, doc string) *T {
	t.Helper()
	out := new(T)
	if err := yaml.UnmarshalStrict([]byte(doc), out); err != nil {
		t.Fatalf("parse %T: %v", out, err)
	}
	return out
}

// wantStatefulSet is cloud-config's StatefulSet for consensus k with what
// the operator adds over it (operatorAdds), then changed by mutate.
func wantStatefulSet(t *testing.T, k citav1.ConsensusKind, mutate ...func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
	t.Helper()
	image, command := consensusShape(k)
	sts := parse[appsv1.StatefulSet](t, strings.NewReplacer("CONSENSUS_IMAGE", image, "CONSENSUS_COMMAND", command).Replace(cloudConfigStatefulSet))
	operatorAdds(&sts.ObjectMeta)
	// Not cloud-config's: Kubernetes defaults the policy to Retain/Retain,
	// but the node's data must outlive a stop and the CitaNode whatever a
	// cluster's defaults, and nodeops refuses whenScaled: Delete.
	sts.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
		WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
	}
	for _, m := range mutate {
		m(sts)
	}
	return sts
}

// operatorAdds is what the operator puts in the metadata of every object it
// owns over cloud-config's: the CitaNode's namespace (cloud-config's YAML is
// applied with kubectl -n); the CitaNode as controller owner, so deleting it
// deletes the object and the object's events reach the controller; and its
// labels, managed-by and the CitaNode's name, so the controller can list
// what it owns. Never the selector or the pod template: the operations and
// the running pods rely on those.
func operatorAdds(m *metav1.ObjectMeta) {
	m.Namespace = ns
	m.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "citacloud.rivtower.com/v1", Kind: "CitaNode", Name: node, UID: "uid-cn",
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	m.Labels[LabelManagedBy] = ManagedBy
	m.Labels[LabelCitaNode] = node
}

// cmpOpts compare quantities by value: "4000m" parsed and "4" are the same
// CPU.
var cmpOpts = cmp.Options{cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })}

func render(t *testing.T, cn *citav1.CitaNode) Objects {
	t.Helper()
	objs, err := Render(cn)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return objs
}

func container(sts *appsv1.StatefulSet, name string) *corev1.Container {
	for i := range sts.Spec.Template.Spec.Containers {
		if c := &sts.Spec.Template.Spec.Containers[i]; c.Name == name {
			return c
		}
	}
	panic("no container " + name)
}

func TestRenderStatefulSet(t *testing.T) {
	tests := map[string]struct {
		cn   *citav1.CitaNode
		want *appsv1.StatefulSet
	}{
		"raft, as cloud-config": {
			cn:   citaNode(citav1.ConsensusRaft),
			want: wantStatefulSet(t, citav1.ConsensusRaft),
		},
		"overlord, as cloud-config": {
			cn:   citaNode(citav1.ConsensusOverlord),
			want: wantStatefulSet(t, citav1.ConsensusOverlord),
		},
		"Stopped: no replica": {
			cn: citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) { cn.Spec.DesiredState = citav1.DesiredStateStopped }),
			want: wantStatefulSet(t, citav1.ConsensusRaft, func(sts *appsv1.StatefulSet) {
				sts.Spec.Replicas = ptr.To[int32](0)
			}),
		},
		"healthCheck false: no probes (--disable-health-check)": {
			cn: citaNode(citav1.ConsensusOverlord, func(cn *citav1.CitaNode) { cn.Spec.HealthCheck = ptr.To(false) }),
			want: wantStatefulSet(t, citav1.ConsensusOverlord, func(sts *appsv1.StatefulSet) {
				for i := range sts.Spec.Template.Spec.Containers {
					sts.Spec.Template.Spec.Containers[i].LivenessProbe = nil
				}
			}),
		},
		"imageInfo overrides the version's images and their pull policy": {
			cn: citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) {
				cn.Spec.Version = "v6.7.3"
				cn.Spec.ImageInfo = citav1.ImageInfo{
					PullPolicy:      corev1.PullAlways,
					ConsensusImage:  "registry.local:5000/citacloud/consensus_raft:v6.7.4-fix",
					ControllerImage: "registry.local:5000/citacloud/controller_hsm@sha256:0123",
				}
			}),
			want: wantStatefulSet(t, citav1.ConsensusRaft, func(sts *appsv1.StatefulSet) {
				for i := range sts.Spec.Template.Spec.Containers {
					c := &sts.Spec.Template.Spec.Containers[i]
					c.ImagePullPolicy = corev1.PullAlways
					c.Image = strings.Replace(c.Image, "v6.7.4", "v6.7.3", 1)
				}
				container(sts, "consensus").Image = "registry.local:5000/citacloud/consensus_raft:v6.7.4-fix"
				container(sts, "controller").Image = "registry.local:5000/citacloud/controller_hsm@sha256:0123"
			}),
		},
		"plain controller": {
			cn: citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) { cn.Spec.Controller = citav1.ControllerPlain }),
			want: wantStatefulSet(t, citav1.ConsensusRaft, func(sts *appsv1.StatefulSet) {
				container(sts, "controller").Image = "docker.io/citacloud/controller:v6.7.4"
			}),
		},
		"Secret account: the same volume, the same keys at the same paths": {
			cn: citaNode(citav1.ConsensusOverlord, func(cn *citav1.CitaNode) { cn.Spec.Account.Secret = "node0-keys" }),
			want: wantStatefulSet(t, citav1.ConsensusOverlord, func(sts *appsv1.StatefulSet) {
				sts.Spec.Template.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "node0-keys"}}
			}),
		},
		"account ConfigMap and config ConfigMap named": {
			cn: citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) {
				cn.Spec.Account.ConfigMap = "node0-account-v2"
				cn.Spec.ConfigMapRef = "node0-config-v2"
			}),
			want: wantStatefulSet(t, citav1.ConsensusRaft, func(sts *appsv1.StatefulSet) {
				sts.Spec.Template.Spec.Volumes[0].ConfigMap.Name = "node0-account-v2"
				sts.Spec.Template.Spec.Volumes[1].ConfigMap.Name = "node0-config-v2"
			}),
		},
		"the pod's placement, pull secrets and resources": {
			cn: citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) {
				cn.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
				cn.Spec.NodeSelector = map[string]string{"disk": "ssd"}
				cn.Spec.Tolerations = []corev1.Toleration{{Key: "chain", Operator: corev1.TolerationOpExists}}
				cn.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
				cn.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}
			}),
			want: wantStatefulSet(t, citav1.ConsensusRaft, func(sts *appsv1.StatefulSet) {
				pod := &sts.Spec.Template.Spec
				pod.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
				pod.NodeSelector = map[string]string{"disk": "ssd"}
				pod.Tolerations = []corev1.Toleration{{Key: "chain", Operator: corev1.TolerationOpExists}}
				pod.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
				for i := range pod.Containers {
					pod.Containers[i].Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}
				}
			}),
		},
		"storage defaults: the cluster's default class, 10Gi, ReadWriteOnce": {
			cn: citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) { cn.Spec.Storage = citav1.NodeStorage{} }),
			want: wantStatefulSet(t, citav1.ConsensusRaft, func(sts *appsv1.StatefulSet) {
				claim := &sts.Spec.VolumeClaimTemplates[0].Spec
				claim.StorageClassName = nil
				claim.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
			}),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := render(t, tc.cn)
			if diff := cmp.Diff(tc.want, got.StatefulSet, cmpOpts); diff != "" {
				t.Errorf("StatefulSet (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenderService(t *testing.T) {
	tests := map[string]struct {
		cn   *citav1.CitaNode
		want func(*corev1.Service)
	}{
		"as cloud-config": {cn: citaNode(citav1.ConsensusRaft)},
		"type and annotations": {
			cn: citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) {
				cn.Spec.Service = citav1.NodeService{Type: corev1.ServiceTypeNodePort, Annotations: map[string]string{"lb.example/internal": "true"}}
			}),
			want: func(svc *corev1.Service) {
				svc.Spec.Type = corev1.ServiceTypeNodePort
				svc.Annotations = map[string]string{"lb.example/internal": "true"}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			want := parse[corev1.Service](t, cloudConfigService)
			operatorAdds(&want.ObjectMeta)
			if tc.want != nil {
				tc.want(want)
			}
			got := render(t, tc.cn)
			if diff := cmp.Diff(want, got.Service, cmpOpts); diff != "" {
				t.Errorf("Service (-want +got):\n%s", diff)
			}
			if got.PeerServices != nil || got.PeerEndpointSlices != nil {
				t.Errorf("peers without externalPeers: %v, %v", got.PeerServices, got.PeerEndpointSlices)
			}
		})
	}
}

func TestRenderExternalPeers(t *testing.T) {
	cn := citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) {
		cn.Spec.ExternalPeers = []citav1.ExternalPeer{
			{Name: "test-chain-node1", Host: "test-chain-node1.other.svc.cluster.local"},
			{Name: "test-chain-node2", IP: "192.0.2.7", Port: 30002},
		}
	})
	host, ip := parse[corev1.Service](t, cloudConfigHostPeer), parse[corev1.Service](t, cloudConfigIPPeer)
	slice := parse[discoveryv1.EndpointSlice](t, cloudConfigIPPeerSlice)
	for _, m := range []*metav1.ObjectMeta{&host.ObjectMeta, &ip.ObjectMeta, &slice.ObjectMeta} {
		operatorAdds(m)
	}
	// Not cloud-config's: the EndpointSlice controller must leave the
	// slice alone, and kube-proxy matches a slice's ports to the Service's
	// by name (an unnamed one to no port named network: the peer would be
	// unreachable).
	slice.Labels[discoveryv1.LabelManagedBy] = ManagedBy
	slice.Ports[0].Name = ptr.To("network")

	got := render(t, cn)
	if diff := cmp.Diff([]*corev1.Service{host, ip}, got.PeerServices, cmpOpts); diff != "" {
		t.Errorf("peer Services (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*discoveryv1.EndpointSlice{slice}, got.PeerEndpointSlices, cmpOpts); diff != "" {
		t.Errorf("peer EndpointSlices (-want +got):\n%s", diff)
	}
}

func TestRenderExternalPeerIPs(t *testing.T) {
	for ip, want := range map[string]discoveryv1.AddressType{
		"192.0.2.7":        discoveryv1.AddressTypeIPv4,
		"2001:db8::7":      discoveryv1.AddressTypeIPv6,
		"::ffff:192.0.2.7": discoveryv1.AddressTypeIPv6, // as Rust's Ipv4Addr parse in cloud-config
	} {
		cn := citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) {
			cn.Spec.ExternalPeers = []citav1.ExternalPeer{{Name: "test-chain-node2", IP: ip}}
		})
		got := render(t, cn)
		if s := got.PeerEndpointSlices[0]; s.AddressType != want || *s.Ports[0].Port != DefaultPeerPort {
			t.Errorf("ip %s: address type %s, port %d; want %s, %d", ip, s.AddressType, *s.Ports[0].Port, want, DefaultPeerPort)
		}
	}
}

func TestRenderRefuses(t *testing.T) {
	tests := map[string]struct {
		mutate func(*citav1.CitaNode)
		reason string
	}{
		"unknown consensus":  {func(cn *citav1.CitaNode) { cn.Spec.Consensus = "bft" }, `spec.consensus "bft"`},
		"unknown controller": {func(cn *citav1.CitaNode) { cn.Spec.Controller = "kms" }, `spec.controller "kms"`},
		"peer with both host and ip": {func(cn *citav1.CitaNode) {
			cn.Spec.ExternalPeers = []citav1.ExternalPeer{{Name: "test-chain-node1", Host: "a.example", IP: "192.0.2.1"}}
		}, "exactly one"},
		"peer with neither": {func(cn *citav1.CitaNode) {
			cn.Spec.ExternalPeers = []citav1.ExternalPeer{{Name: "test-chain-node1"}}
		}, "exactly one"},
		"peer ip that is not one": {func(cn *citav1.CitaNode) {
			cn.Spec.ExternalPeers = []citav1.ExternalPeer{{Name: "test-chain-node1", IP: "node1.example"}}
		}, "is not an IP address"},
		"peer named as the node": {func(cn *citav1.CitaNode) {
			cn.Spec.ExternalPeers = []citav1.ExternalPeer{{Name: node, Host: "a.example"}}
		}, "the node's own name"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Render(citaNode(citav1.ConsensusRaft, tc.mutate))
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(ie.Reason, tc.reason) {
				t.Fatalf("Render: %v; want an *InputError saying %q", err, tc.reason)
			}
		})
	}
}

// TestRenderDoesNotShareTheSpec: the controller may change what Render
// returns (and cn may come from a cache, which nobody changes).
func TestRenderDoesNotShareTheSpec(t *testing.T) {
	cn := citaNode(citav1.ConsensusRaft, func(cn *citav1.CitaNode) {
		cn.Spec.NodeSelector = map[string]string{"disk": "ssd"}
		cn.Spec.Service.Annotations = map[string]string{"a": "b"}
		cn.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
	})
	before := cn.DeepCopy()
	got := render(t, cn)
	got.StatefulSet.Spec.Template.Spec.NodeSelector["disk"] = "hdd"
	got.Service.Annotations["a"] = "c"
	got.StatefulSet.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceCPU] = resource.MustParse("2")
	got.StatefulSet.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("1Gi")
	if diff := cmp.Diff(before, cn, cmpOpts); diff != "" {
		t.Errorf("the CitaNode changed (-before +after):\n%s", diff)
	}
	if c := got.StatefulSet.Spec.Template.Spec.Containers[1].Resources.Limits[corev1.ResourceCPU]; c.Cmp(resource.MustParse("1")) != 0 {
		t.Errorf("containers share their resources: consensus's cpu limit is %s", c.String())
	}
}

func TestImages(t *testing.T) {
	got := Images(&citav1.CitaNode{Spec: citav1.CitaNodeSpec{ChainName: chain}})
	want := map[string]string{
		"network":    "docker.io/citacloud/network_zenoh:v6.7.4",
		"consensus":  "docker.io/citacloud/consensus_raft:v6.7.4",
		"executor":   "docker.io/citacloud/executor_evm:v6.7.4",
		"storage":    "docker.io/citacloud/storage_opendal:v6.7.4",
		"controller": "docker.io/citacloud/controller_hsm:v6.7.4",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Images of the defaults (-want +got):\n%s", diff)
	}
}

// TestLocateRenderedNode: every operation finds a CitaNode's node as it
// finds a cloud-config one, through nodeops.Locate over the cache.
func TestLocateRenderedNode(t *testing.T) {
	for _, k := range []citav1.ConsensusKind{citav1.ConsensusRaft, citav1.ConsensusOverlord} {
		t.Run(string(k), func(t *testing.T) {
			objs := render(t, citaNode(k, func(cn *citav1.CitaNode) { cn.Spec.DesiredState = citav1.DesiredStateStopped }))
			l := listers(t, objs.StatefulSet, nodetest.CloudConfigPVC(node, nodetest.Namespace(ns)))
			n, err := nodeops.Locate(l, nodeops.Target{Namespace: ns, Chain: chain, Name: node, Method: citav1.DeployMethodCloudConfig})
			if err != nil {
				t.Fatalf("Locate: %v", err)
			}
			got := map[string]any{
				"workload": n.Workload.Key(), "replicas": n.Workload.Replicas,
				"claim": n.DataClaim, "subPath": n.DataSubPath,
				"config": n.ConfigMap, "account": n.AccountConfigMap,
				"crypto": n.Crypto, "consensus": n.Consensus,
			}
			want := map[string]any{
				"workload": "StatefulSet/" + node, "replicas": int32(0),
				"claim": "datadir-" + node + "-0", "subPath": "",
				"config": node + "-config", "account": node + "-account",
				"crypto": "", "consensus": string(k),
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Locate (-want +got):\n%s", diff)
			}
			// The Jobs' affinity and the stop's wait find the node's pod
			// by the pod template's labels.
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: node + "-0", Namespace: ns, Labels: objs.StatefulSet.Spec.Template.Labels}}
			if !n.IsPod(pod) || !n.Workload.Selector.Matches(labels.Set{nodetest.CloudConfigNodeLabel: node, nodetest.CloudConfigChainLabel: chain}) {
				t.Errorf("the node's pod, labelled %v, is not the node's", pod.Labels)
			}
		})
	}
}

func listers(t *testing.T, sts *appsv1.StatefulSet, pvc *corev1.PersistentVolumeClaim) nodeops.Listers {
	t.Helper()
	index := func(objs ...any) cache.Indexer {
		i := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		for _, o := range objs {
			if err := i.Add(o); err != nil {
				t.Fatal(err)
			}
		}
		return i
	}
	return nodeops.Listers{
		StatefulSets:    appslisters.NewStatefulSetLister(index(sts)),
		Deployments:     appslisters.NewDeploymentLister(index()),
		Pods:            corelisters.NewPodLister(index()),
		PVCs:            corelisters.NewPersistentVolumeClaimLister(index(pvc)),
		ConfigMapExists: func(string, string) (bool, error) { return true, nil },
	}
}
