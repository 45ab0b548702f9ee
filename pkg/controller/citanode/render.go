package citanode

import (
	"fmt"
	"net/netip"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	citav1 "github.com/cita-cloud/cita-node-operator/pkg/apis/citacloud/v1"
	"github.com/cita-cloud/cita-node-operator/pkg/nodeops"
)

// Objects are what the controller keeps in the cluster for a CitaNode, in
// the shape cloud-config 6.7.4's update-yaml writes them (statefulset.yaml,
// node-svc.yaml, <peer>-external-svc.yaml, <peer>-external-endpointslice.yaml).
type Objects struct {
	StatefulSet *appsv1.StatefulSet
	Service     *corev1.Service
	// PeerServices are the Services named after the node's external peers:
	// ExternalName for a host, selector-less for an IP.
	PeerServices []*corev1.Service
	// PeerEndpointSlices back the selector-less PeerServices, one each.
	PeerEndpointSlices []*discoveryv1.EndpointSlice
}

// Labels cloud-config puts on a node's objects, its pod template and its
// selector. The operations find a node's pods by them (Job affinity on
// chain-node), so they are exactly cloud-config's.
const (
	LabelChainName = "app.kubernetes.io/chain-name"
	LabelChainNode = "app.kubernetes.io/chain-node"
)

// Labels the operator adds to the metadata of the objects it owns (never to
// the selector or the pod template, which the operations and the pods rely
// on): who manages them, and which CitaNode they belong to, so the
// controller can list them, peers it no longer renders included.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "cita-node-operator"
	LabelCitaNode  = "citacloud.rivtower.com/citanode"
)

// Names of the node's containers, as cloud-config names them: the
// operations read the consensus from the image of the container named
// consensus.
const (
	ContainerNetwork    = "network"
	ContainerConsensus  = "consensus"
	ContainerExecutor   = "executor"
	ContainerStorage    = "storage"
	ContainerController = "controller"
)

// Names of the pod template's volumes besides nodeops' (datadir,
// node-account, node-config), and where the containers mount them.
const (
	ConfigVolume    = nodeops.ConfigVolume
	LocaltimeVolume = "node-localtime"

	dataMountPath    = "/data"
	configMountPath  = "/etc/cita-cloud/config"
	accountMountPath = "/mnt"
	localtimePath    = "/etc/localtime"
	configFile       = configMountPath + "/config.toml"
	privateKeyFile   = accountMountPath + "/private_key"
)

// The network service's peer-to-peer port (zenoh over QUIC, so UDP) and the
// node Service's ports, as cloud-config writes them.
const (
	networkPort    = 40000
	executorPort   = 50002
	controllerPort = 50004
)

// The defaults the CRD applies (the markers of citanode_types.go), applied
// again here so that a CitaNode that did not pass the apiserver's
// defaulting (a fake client in a test) renders the same.
const (
	DefaultVersion    = "v6.7.4"
	DefaultImageRepo  = "docker.io/citacloud"
	DefaultPeerPort   = 40000
	defaultPullPolicy = corev1.PullIfNotPresent
	defaultAccessMode = corev1.ReadWriteOnce
)

var defaultStorageSize = resource.MustParse("10Gi")

// defaultResources are update-yaml's defaults for every container
// (--requests-cpu 10m, --requests-memory 32Mi, --limits-cpu 4000m,
// --limits-memory 8192Mi).
func defaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4000m"), corev1.ResourceMemory: resource.MustParse("8192Mi")},
	}
}

// microservice is one of the node's five containers as update-yaml builds
// it: its gRPC port (which its liveness probe asks), how long the probe
// waits first, and whether it mounts the account (the services that read
// node_address or the private key).
type microservice struct {
	container    string
	grpcPort     int32
	probeDelay   int32
	mountAccount bool
}

// microservices in the order update-yaml writes the containers.
var microservices = []microservice{
	{ContainerNetwork, 50000, 30, true},
	{ContainerConsensus, 50001, 30, true},
	{ContainerExecutor, executorPort, 30, false},
	{ContainerStorage, 50003, 30, false},
	{ContainerController, controllerPort, 60, true},
}

// withDefaults is a copy of the spec with the CRD's defaults filled in.
func withDefaults(in *citav1.CitaNodeSpec) *citav1.CitaNodeSpec {
	s := in.DeepCopy()
	if s.Version == "" {
		s.Version = DefaultVersion
	}
	if s.Consensus == "" {
		s.Consensus = citav1.ConsensusRaft
	}
	if s.Controller == "" {
		s.Controller = citav1.ControllerHSM
	}
	if s.ImageInfo.PullPolicy == "" {
		s.ImageInfo.PullPolicy = defaultPullPolicy
	}
	if s.Storage.Size == nil {
		s.Storage.Size = ptr.To(defaultStorageSize.DeepCopy())
	}
	if s.Storage.AccessMode == "" {
		s.Storage.AccessMode = defaultAccessMode
	}
	if s.DesiredState == "" {
		s.DesiredState = citav1.DesiredStateRunning
	}
	if s.HealthCheck == nil {
		s.HealthCheck = ptr.To(true)
	}
	if s.Service.Type == "" {
		s.Service.Type = corev1.ServiceTypeClusterIP
	}
	for i := range s.ExternalPeers {
		if s.ExternalPeers[i].Port == 0 {
			s.ExternalPeers[i].Port = DefaultPeerPort
		}
	}
	return s
}

// ConfigMapName is the ConfigMap holding the node's config.toml.
func ConfigMapName(cn *citav1.CitaNode) string {
	if cn.Spec.ConfigMapRef != "" {
		return cn.Spec.ConfigMapRef
	}
	return cn.Name + "-config"
}

// Account is where the node's keys are: a ConfigMap (cloud-config's
// <node>-account by default) or a Secret.
type Account struct {
	Kind string // "ConfigMap" or "Secret"
	Name string
}

func (a Account) String() string { return a.Kind + " " + a.Name }

// AccountOf says where the node's account is.
func AccountOf(cn *citav1.CitaNode) Account {
	switch {
	case cn.Spec.Account.Secret != "":
		return Account{Kind: "Secret", Name: cn.Spec.Account.Secret}
	case cn.Spec.Account.ConfigMap != "":
		return Account{Kind: "ConfigMap", Name: cn.Spec.Account.ConfigMap}
	default:
		return Account{Kind: "ConfigMap", Name: cn.Name + "-account"}
	}
}

// Images are the images of the node's containers, by container: the
// version's docker.io/citacloud/<service>:<version>, unless imageInfo names
// another. An unknown consensus or controller kind has no image.
func Images(cn *citav1.CitaNode) map[string]string {
	s := withDefaults(&cn.Spec)
	image := func(override, service string) string {
		if override != "" {
			return override
		}
		if service == "" {
			return ""
		}
		return DefaultImageRepo + "/" + service + ":" + s.Version
	}
	return map[string]string{
		ContainerNetwork:    image(s.ImageInfo.NetworkImage, "network_zenoh"),
		ContainerConsensus:  image(s.ImageInfo.ConsensusImage, consensusService(s.Consensus)),
		ContainerExecutor:   image(s.ImageInfo.ExecutorImage, "executor_evm"),
		ContainerStorage:    image(s.ImageInfo.StorageImage, "storage_opendal"),
		ContainerController: image(s.ImageInfo.ControllerImage, controllerService(s.Controller)),
	}
}

func consensusService(k citav1.ConsensusKind) string {
	switch k {
	case citav1.ConsensusRaft:
		return "consensus_raft"
	case citav1.ConsensusOverlord:
		return "consensus_overlord"
	}
	return ""
}

func controllerService(k citav1.ControllerKind) string {
	switch k {
	case citav1.ControllerHSM:
		return "controller_hsm"
	case citav1.ControllerPlain:
		return "controller"
	}
	return ""
}

// Render is the node's objects for a CitaNode. It reads nothing but cn; an
// *InputError says the spec cannot be rendered (what the CRD's validation
// should have refused).
func Render(cn *citav1.CitaNode) (Objects, error) {
	s := withDefaults(&cn.Spec)
	if consensusService(s.Consensus) == "" {
		return Objects{}, inputError("spec.consensus %q: not raft or overlord", s.Consensus)
	}
	if controllerService(s.Controller) == "" {
		return Objects{}, inputError("spec.controller %q: not hsm or plain", s.Controller)
	}
	r := renderer{cn: cn, spec: s}
	objs := Objects{StatefulSet: r.statefulSet(), Service: r.service()}
	for _, p := range s.ExternalPeers {
		svc, slice, err := r.peer(p)
		if err != nil {
			return Objects{}, err
		}
		objs.PeerServices = append(objs.PeerServices, svc)
		if slice != nil {
			objs.PeerEndpointSlices = append(objs.PeerEndpointSlices, slice)
		}
	}
	return objs, nil
}

type renderer struct {
	cn   *citav1.CitaNode
	spec *citav1.CitaNodeSpec // cn's, with the defaults
}

// nodeLabels are cloud-config's two labels: metadata, selector and pod
// template alike.
func (r renderer) nodeLabels() map[string]string {
	return map[string]string{LabelChainName: r.spec.ChainName, LabelChainNode: r.cn.Name}
}

// meta is the metadata of an object the CitaNode owns: in its namespace,
// controlled by it (so deleting the CitaNode deletes it, and its events
// enqueue the CitaNode), with labels plus the operator's own.
func (r renderer) meta(name string, labels map[string]string) metav1.ObjectMeta {
	l := map[string]string{LabelManagedBy: ManagedBy, LabelCitaNode: r.cn.Name}
	for k, v := range labels {
		l[k] = v
	}
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       r.cn.Namespace,
		Labels:          l,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(r.cn, citav1.SchemeGroupVersion.WithKind("CitaNode"))},
	}
}

func (r renderer) statefulSet() *appsv1.StatefulSet {
	s := r.spec
	replicas := int32(1)
	if s.DesiredState == citav1.DesiredStateStopped {
		replicas = 0
	}
	affinity := s.Affinity
	if affinity == nil {
		affinity = r.chainAntiAffinity()
	}
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: r.meta(r.cn.Name, r.nodeLabels()),
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: r.nodeLabels()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: r.nodeLabels()},
				Spec: corev1.PodSpec{
					SecurityContext:  &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](1000), FSGroup: ptr.To[int64](1000)},
					Affinity:         affinity,
					Containers:       r.containers(),
					Volumes:          r.volumes(),
					ImagePullSecrets: s.ImagePullSecrets,
					NodeSelector:     s.NodeSelector,
					Tolerations:      s.Tolerations,
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: nodeops.DataVolume},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{s.Storage.AccessMode},
					Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: *s.Storage.Size}},
					StorageClassName: s.Storage.StorageClassName,
				},
			}},
			// Not cloud-config's (which leaves it to the apiserver's
			// default, the same): the node's data must outlive both a stop
			// and the CitaNode, and nodeops refuses a StatefulSet whose
			// claims go on scale-down.
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
				WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			},
		},
	}
}

// chainAntiAffinity is cloud-config's: spread a chain's nodes over
// machines when it can.
func (r renderer) chainAntiAffinity() *corev1.Affinity {
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{
				TopologyKey: "kubernetes.io/hostname",
				LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: LabelChainName, Operator: metav1.LabelSelectorOpIn, Values: []string{r.spec.ChainName},
				}}},
			},
		}},
	}}
}

func (r renderer) containers() []corev1.Container {
	s := r.spec
	images := Images(r.cn)
	resources := defaultResources()
	if s.Resources != nil {
		resources = *s.Resources
	}
	commands := map[string][]string{
		ContainerNetwork:    {"network", "run", "-c", configFile},
		ContainerConsensus:  {"consensus", "run", "-c", configFile, "--stdout"},
		ContainerExecutor:   {"executor", "run", "-c", configFile},
		ContainerStorage:    {"storage", "run", "-c", configFile},
		ContainerController: {"controller", "run", "-c", configFile, "-p", privateKeyFile},
	}
	if s.Consensus == citav1.ConsensusOverlord {
		commands[ContainerConsensus] = []string{"consensus", "run", "-c", configFile, "-p", privateKeyFile}
	}
	var out []corev1.Container
	for _, m := range microservices {
		c := corev1.Container{
			Name:            m.container,
			Image:           images[m.container],
			ImagePullPolicy: s.ImageInfo.PullPolicy,
			Command:         commands[m.container],
			WorkingDir:      dataMountPath,
			Resources:       *resources.DeepCopy(),
		}
		if m.container == ContainerNetwork {
			c.Ports = append(c.Ports, corev1.ContainerPort{Name: "network", ContainerPort: networkPort, Protocol: corev1.ProtocolUDP})
		}
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: "grpc", ContainerPort: m.grpcPort, Protocol: corev1.ProtocolTCP})
		c.VolumeMounts = []corev1.VolumeMount{
			{Name: nodeops.DataVolume, MountPath: dataMountPath},
			{Name: ConfigVolume, MountPath: configMountPath},
		}
		if m.mountAccount {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: nodeops.AccountVolume, MountPath: accountMountPath})
		}
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: LocaltimeVolume, MountPath: localtimePath})
		if *s.HealthCheck {
			c.LivenessProbe = &corev1.Probe{
				ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"grpc-health-probe", fmt.Sprintf("-addr=localhost:%d", m.grpcPort)}}},
				InitialDelaySeconds: m.probeDelay,
				PeriodSeconds:       10,
			}
		}
		out = append(out, c)
	}
	return out
}

// volumes: the account, the config and the machine's time zone, in
// cloud-config's order. A Secret account, projected without items as a
// ConfigMap is, puts each of its keys (node_address, validator_address,
// private_key) at the same path under /mnt.
func (r renderer) volumes() []corev1.Volume {
	account := corev1.Volume{Name: nodeops.AccountVolume}
	switch a := AccountOf(r.cn); a.Kind {
	case "Secret":
		account.Secret = &corev1.SecretVolumeSource{SecretName: a.Name}
	default:
		account.ConfigMap = &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: a.Name}}
	}
	return []corev1.Volume{
		account,
		{Name: ConfigVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName(r.cn)}}}},
		{Name: LocaltimeVolume, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: localtimePath}}},
	}
}

// service is the node's Service, named after it: its peers reach its
// network port by this name, clients its controller (rpc) and executor
// (call).
func (r renderer) service() *corev1.Service {
	m := r.meta(r.cn.Name, r.nodeLabels())
	m.Annotations = r.spec.Service.Annotations
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: m,
		Spec: corev1.ServiceSpec{
			Type:     r.spec.Service.Type,
			Selector: r.nodeLabels(),
			Ports: []corev1.ServicePort{
				{Name: "network", Port: networkPort, TargetPort: intstr.FromInt32(networkPort), Protocol: corev1.ProtocolUDP},
				{Name: "rpc", Port: controllerPort, TargetPort: intstr.FromInt32(controllerPort), Protocol: corev1.ProtocolTCP},
				{Name: "call", Port: executorPort, TargetPort: intstr.FromInt32(executorPort), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

// peer is the Service named after an external peer, which the node's
// config.toml names as the peer's domain: an ExternalName Service for a
// host; for an IP, a selector-less Service whose port 40000 (the port
// cloud-config writes in config.toml for such a peer) leads to the peer's
// port, and the EndpointSlice that says where the peer is.
func (r renderer) peer(p citav1.ExternalPeer) (*corev1.Service, *discoveryv1.EndpointSlice, error) {
	switch {
	case p.Name == r.cn.Name:
		return nil, nil, inputError("spec.externalPeers %q: the node's own name, which its own Service has", p.Name)
	case (p.Host == "") == (p.IP == ""):
		return nil, nil, inputError("spec.externalPeers %q: give host or ip, exactly one", p.Name)
	case p.Host != "":
		return &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: r.meta(p.Name, nil),
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: p.Host},
		}, nil, nil
	}
	ip, err := netip.ParseAddr(p.IP)
	if err != nil {
		return nil, nil, inputError("spec.externalPeers %q: ip %q is not an IP address", p.Name, p.IP)
	}
	// As cloud-config reads it (Rust's Ipv4Addr parse): an IPv4-mapped
	// IPv6 address is IPv6.
	addressType := discoveryv1.AddressTypeIPv6
	if ip.Is4() {
		addressType = discoveryv1.AddressTypeIPv4
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: r.meta(p.Name, nil),
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "network", Port: networkPort, TargetPort: intstr.FromInt32(p.Port), Protocol: corev1.ProtocolUDP,
		}}},
	}
	slice := &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		// The EndpointSlice controller leaves a slice alone that says
		// another manager owns it.
		ObjectMeta: r.meta(p.Name+"-1", map[string]string{
			discoveryv1.LabelServiceName: p.Name,
			discoveryv1.LabelManagedBy:   ManagedBy,
		}),
		AddressType: addressType,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{ip.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		// Named after the Service's port, unlike cloud-config's: kube-proxy
		// matches a slice's ports to the Service's by name and ignores
		// the others, so an unnamed port would leave the peer unreachable.
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("network"), Port: ptr.To(p.Port), Protocol: ptr.To(corev1.ProtocolUDP)}},
	}
	return svc, slice, nil
}
