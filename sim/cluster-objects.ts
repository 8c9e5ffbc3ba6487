// The objects of a large cluster as kube-apiserver serves them, for benchmarks
// at scale (bench/enrich/identity-scale.bench.ts): pods with what a real pod
// of a Deployment carries (labels, annotations, managedFields of three
// managers, two containers with probes, env, resources and mounts, status
// with conditions and container states), ~7 KiB of JSON each, and the
// ReplicaSets, Jobs, Services and Nodes around them. Deterministic: object i
// is the same in every run. Only the shapes matter, so values repeat where
// they do in a cluster (namespaces, images, node names) and are unique where
// they are (names, uids, IPs).
import type { KubeObject } from './kube-apiserver.ts';

export interface ClusterShape {
  pods: number;
  /** Pods per ReplicaSet (default 3): N/3 ReplicaSets. */
  podsPerReplicaSet?: number;
  /** One Job per this many pods (default 20); each owns one pod. */
  podsPerJob?: number;
  /** One Service per this many pods (default 10). */
  podsPerService?: number;
  /** Pods per node (default 100). */
  podsPerNode?: number;
  /** Namespaces (default 200). */
  namespaces?: number;
}

const at = '2026-11-20T08:15:42Z';

function uid(kind: number, i: number): string {
  const hex = (i >>> 0).toString(16).padStart(12, '0');
  return `7f3c${kind.toString(16).padStart(4, '0')}-0b1e-4c2d-9a6f-${hex}`;
}

/** Objects of one owner share a namespace: namespace k of the owner's index. */
function namespaceOf(shape: ClusterShape, k: number): string {
  return `team-${k % (shape.namespaces ?? 200)}`;
}

/** 10.(64 + i / 65536).x.y: unique per pod, in 10.64.0.0/10. */
export function podIp(i: number): string {
  const n = (10 << 24) + (64 << 16) + i + 1;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function nodeName(i: number): string {
  return `ip-10-0-${i >> 8}-${i & 255}.eu-west-1.compute.internal`;
}

function replicaSetName(r: number): string {
  return `svc-${r % 997}-${(r * 2654435761 >>> 0).toString(36).slice(0, 9)}`;
}

/** Pod i: the (i mod podsPerJob == 0) ones belong to a Job, the others to a ReplicaSet. */
export function clusterPod(shape: ClusterShape, i: number, extraAnnotations: Record<string, string> = {}): KubeObject {
  const perJob = shape.podsPerJob ?? 20;
  const node = nodeName(Math.floor(i / (shape.podsPerNode ?? 100)));
  const ip = podIp(i);
  const job = i % perJob === 0;
  const r = Math.floor(i / (shape.podsPerReplicaSet ?? 3));
  const ns = job ? namespaceOf(shape, i / perJob) : namespaceOf(shape, r);
  const ownerName = job ? `batch-${i / perJob}-29384750` : replicaSetName(r);
  const app = job ? `batch-${(i / perJob) % 50}` : `svc-${r % 997}`;
  const name = `${ownerName}-${(i * 40503 >>> 0).toString(36).padStart(5, 'x').slice(-5)}`;
  const container = (cname: string, image: string, port: number) => ({
    name: cname,
    image,
    imagePullPolicy: 'IfNotPresent',
    ports: [{ name: 'http', containerPort: port, protocol: 'TCP' }],
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } } },
      { name: 'LOG_LEVEL', value: 'info' },
      { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: 'http://otel-collector.observability.svc.cluster.local:4317' },
    ],
    resources: { limits: { cpu: '1', memory: '512Mi' }, requests: { cpu: '100m', memory: '128Mi' } },
    volumeMounts: [
      { name: 'config', mountPath: '/etc/app', readOnly: true },
      { name: 'kube-api-access-x7k2p', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true },
    ],
    livenessProbe: { httpGet: { path: '/healthz', port, scheme: 'HTTP' }, initialDelaySeconds: 10, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: '/ready', port, scheme: 'HTTP' }, timeoutSeconds: 1, periodSeconds: 5, successThreshold: 1, failureThreshold: 3 },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } },
  });
  const containerStatus = (cname: string, image: string, n: number) => ({
    name: cname,
    state: { running: { startedAt: at } },
    lastState: {},
    ready: true,
    restartCount: 0,
    image,
    imageID: `${image.split(':')[0]}@sha256:${'4f9a7c1e'.repeat(8)}`,
    containerID: `containerd://${(i * 2654435761 + n >>> 0).toString(16).padStart(8, '0').repeat(8)}`,
    started: true,
  });
  const f = (keys: string[]) => Object.fromEntries(keys.map((k) => [k, {}]));
  return {
    metadata: {
      name,
      generateName: `${ownerName}-`,
      namespace: ns,
      uid: uid(1, i),
      labels: {
        app: app,
        'app.kubernetes.io/name': app,
        'app.kubernetes.io/part-of': `product-${i % 37}`,
        'app.kubernetes.io/version': `1.${i % 7}.${i % 3}`,
        ...(job ? { 'batch.kubernetes.io/job-name': ownerName, 'job-name': ownerName, 'controller-uid': uid(3, i / perJob) } : { 'pod-template-hash': ownerName.slice(-9) }),
        team: `team-${i % 41}`,
      },
      annotations: {
        'kubectl.kubernetes.io/restartedAt': at,
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '9090',
        'cluster-autoscaler.kubernetes.io/safe-to-evict': 'true',
        ...extraAnnotations,
      },
      ownerReferences: [
        job
          ? { apiVersion: 'batch/v1', kind: 'Job', name: ownerName, uid: uid(3, i / perJob), controller: true, blockOwnerDeletion: true }
          : { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: ownerName, uid: uid(2, r), controller: true, blockOwnerDeletion: true },
      ],
      managedFields: [
        {
          manager: 'kube-controller-manager',
          operation: 'Update',
          apiVersion: 'v1',
          time: at,
          fieldsType: 'FieldsV1',
          fieldsV1: {
            'f:metadata': { 'f:generateName': {}, 'f:labels': f(['.', 'f:app', 'f:app.kubernetes.io/name', 'f:pod-template-hash', 'f:team']), 'f:ownerReferences': { '.': {}, [`k:{"uid":"${uid(2, r)}"}`]: {} } },
            'f:spec': {
              'f:containers': { 'k:{"name":"app"}': f(['.', 'f:env', 'f:image', 'f:imagePullPolicy', 'f:livenessProbe', 'f:name', 'f:ports', 'f:readinessProbe', 'f:resources', 'f:securityContext', 'f:volumeMounts']), 'k:{"name":"proxy"}': f(['.', 'f:image', 'f:name', 'f:ports', 'f:resources']) },
              ...f(['f:dnsPolicy', 'f:enableServiceLinks', 'f:restartPolicy', 'f:schedulerName', 'f:securityContext', 'f:serviceAccount', 'f:serviceAccountName', 'f:terminationGracePeriodSeconds', 'f:topologySpreadConstraints', 'f:volumes']),
            },
          },
        },
        {
          manager: 'kubelet',
          operation: 'Update',
          apiVersion: 'v1',
          time: at,
          fieldsType: 'FieldsV1',
          fieldsV1: {
            'f:status': {
              'f:conditions': Object.fromEntries(['ContainersReady', 'Initialized', 'PodReadyToStartContainers', 'Ready'].map((c) => [`k:{"type":"${c}"}`, f(['.', 'f:lastProbeTime', 'f:lastTransitionTime', 'f:status', 'f:type'])])),
              ...f(['f:containerStatuses', 'f:hostIP', 'f:hostIPs', 'f:phase', 'f:podIP', 'f:startTime']),
              'f:podIPs': { '.': {}, [`k:{"ip":"${ip}"}`]: f(['.', 'f:ip']) },
            },
          },
          subresource: 'status',
        },
      ],
      creationTimestamp: at,
    },
    spec: {
      volumes: [
        { name: 'config', configMap: { name: `${app}-config`, defaultMode: 420 } },
        {
          name: 'kube-api-access-x7k2p',
          projected: {
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
              { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
            ],
            defaultMode: 420,
          },
        },
      ],
      containers: [
        container('app', `registry.example.com/${ns}/${app}:1.${i % 7}.${i % 3}`, 8080),
        container('proxy', 'registry.example.com/platform/envoy:v1.31.2', 15001),
      ],
      restartPolicy: job ? 'OnFailure' : 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      serviceAccount: 'default',
      nodeName: node,
      securityContext: { fsGroup: 2000 },
      schedulerName: 'default-scheduler',
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
    },
    status: {
      phase: 'Running',
      conditions: ['PodReadyToStartContainers', 'Initialized', 'Ready', 'ContainersReady', 'PodScheduled'].map((type) => ({ type, status: 'True', lastProbeTime: null, lastTransitionTime: at })),
      hostIP: `10.0.${(i >> 16) & 255}.${(i >> 8) & 255}`,
      hostIPs: [{ ip: `10.0.${(i >> 16) & 255}.${(i >> 8) & 255}` }],
      podIP: ip,
      podIPs: [{ ip }],
      startTime: at,
      containerStatuses: [
        containerStatus('app', `registry.example.com/${ns}/${app}:1.${i % 7}.${i % 3}`, 0),
        containerStatus('proxy', 'registry.example.com/platform/envoy:v1.31.2', 1),
      ],
      qosClass: 'Burstable',
    },
  };
}

/** ReplicaSet r, owned by its Deployment. */
export function clusterReplicaSet(shape: ClusterShape, r: number): KubeObject {
  const pods = shape.podsPerReplicaSet ?? 3;
  const name = replicaSetName(r);
  const app = `svc-${r % 997}`;
  return {
    metadata: {
      name,
      namespace: namespaceOf(shape, r),
      uid: uid(2, r),
      labels: { app, 'pod-template-hash': name.slice(-9) },
      annotations: { 'deployment.kubernetes.io/desired-replicas': String(pods), 'deployment.kubernetes.io/max-replicas': String(pods + 1), 'deployment.kubernetes.io/revision': '3' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: app, uid: uid(4, r % 997), controller: true, blockOwnerDeletion: true }],
      creationTimestamp: at,
    },
    spec: { replicas: pods, selector: { matchLabels: { app, 'pod-template-hash': name.slice(-9) } } },
    status: { replicas: pods, fullyLabeledReplicas: pods, readyReplicas: pods, availableReplicas: pods, observedGeneration: 3 },
  };
}

/** Job j (its pod is pod j × podsPerJob), owned by a CronJob. */
export function clusterJob(shape: ClusterShape, j: number): KubeObject {
  const name = `batch-${j}-29384750`;
  return {
    metadata: {
      name,
      namespace: namespaceOf(shape, j),
      uid: uid(3, j),
      labels: { 'batch.kubernetes.io/job-name': name, 'job-name': name },
      ownerReferences: [{ apiVersion: 'batch/v1', kind: 'CronJob', name: `batch-${j % 50}`, uid: uid(5, j % 50), controller: true, blockOwnerDeletion: true }],
      creationTimestamp: at,
    },
    spec: { parallelism: 1, completions: 1, backoffLimit: 6, completionMode: 'NonIndexed' },
    status: { startTime: at, active: 1 },
  };
}

/** Service s: a ClusterIP in 10.96.0.0/12 with two ports. */
export function clusterService(shape: ClusterShape, s: number): KubeObject {
  const ip = `10.${96 + ((s >> 16) & 15)}.${(s >> 8) & 255}.${s & 255}`;
  return {
    metadata: { name: `svc-${s}`, namespace: namespaceOf(shape, s), uid: uid(6, s), labels: { app: `svc-${s % 997}` }, creationTimestamp: at },
    spec: {
      type: 'ClusterIP',
      clusterIP: ip,
      clusterIPs: [ip],
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      selector: { app: `svc-${s % 997}` },
      ports: [
        { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' },
        { name: 'metrics', port: 9090, targetPort: 9090, protocol: 'TCP' },
      ],
      sessionAffinity: 'None',
      internalTrafficPolicy: 'Cluster',
    },
    status: { loadBalancer: {} },
  };
}

export function clusterNode(n: number): KubeObject {
  const name = nodeName(n);
  return {
    metadata: {
      name,
      uid: uid(7, n),
      labels: {
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'node.kubernetes.io/instance-type': 'm6i.4xlarge',
        'topology.kubernetes.io/region': 'eu-west-1',
        'topology.kubernetes.io/zone': `eu-west-1${'abc'[n % 3]}`,
      },
      creationTimestamp: at,
    },
    spec: { podCIDR: `10.${64 + (n >> 8)}.${n & 255}.0/24`, providerID: `aws:///eu-west-1a/i-0${n.toString(16).padStart(16, '0')}` },
    status: {
      capacity: { cpu: '16', memory: '64978592Ki', pods: '110', 'ephemeral-storage': '104845292Ki' },
      allocatable: { cpu: '15890m', memory: '63959712Ki', pods: '110', 'ephemeral-storage': '95551679124' },
      conditions: ['MemoryPressure', 'DiskPressure', 'PIDPressure', 'Ready'].map((type) => ({ type, status: type === 'Ready' ? 'True' : 'False', lastHeartbeatTime: at, lastTransitionTime: at, reason: `Kubelet${type}`, message: 'kubelet is posting ready status' })),
      addresses: [
        { type: 'InternalIP', address: `10.0.${n >> 8}.${n & 255}` },
        { type: 'Hostname', address: name },
        { type: 'InternalDNS', address: name },
      ],
      nodeInfo: { kubeletVersion: 'v1.33.4', containerRuntimeVersion: 'containerd://1.7.27', kernelVersion: '6.1.147-172.266.amzn2023.x86_64', osImage: 'Amazon Linux 2023', operatingSystem: 'linux', architecture: 'amd64' },
    },
  };
}

/** Every object of a cluster of this shape, by kind, in creation order (nodes, owners, services, then pods). */
export function* clusterObjects(shape: ClusterShape): Generator<['node' | 'replicaset' | 'job' | 'service' | 'pod', KubeObject]> {
  const n = shape.pods;
  for (let i = 0; i < Math.ceil(n / (shape.podsPerNode ?? 100)); i++) yield ['node', clusterNode(i)];
  for (let r = 0; r < Math.ceil(n / (shape.podsPerReplicaSet ?? 3)); r++) yield ['replicaset', clusterReplicaSet(shape, r)];
  for (let j = 0; j < Math.ceil(n / (shape.podsPerJob ?? 20)); j++) yield ['job', clusterJob(shape, j)];
  for (let s = 0; s < Math.ceil(n / (shape.podsPerService ?? 10)); s++) yield ['service', clusterService(shape, s)];
  for (let i = 0; i < n; i++) yield ['pod', clusterPod(shape, i)];
}
