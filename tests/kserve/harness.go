package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/kserve/kserve/pkg/apis/serving/v1beta1"
	"github.com/kserve/kserve/pkg/constants"
	kservescheme "github.com/kserve/kserve/pkg/scheme"
)

// Request is what the Python tests send: the rendered documents of one scenario and the cluster around them.
type Request struct {
	// KServeConfigMap is KServe's own inferenceservice-config as that release ships it
	// (config/configmap/inferenceservice.yaml in the KServe module).
	KServeConfigMap string `json:"kserveConfigMap"`
	// ConfigOverrides are merged into that ConfigMap's JSON values, per data key (e.g. ingress.enableGatewayApi):
	// what the chart README tells a cluster operator to set.
	ConfigOverrides map[string]map[string]any `json:"configOverrides"`
	// KnativeConfigDir is Knative Serving's config/core/configmaps at the version KServe pins.
	KnativeConfigDir string `json:"knativeConfigDir"`
	// KnativeFeatures are the config-features flags the chart README asks for, over Knative's defaults.
	KnativeFeatures map[string]string `json:"knativeFeatures"`
	// Namespace the release is installed in, and the Pod Security level that namespace enforces.
	Namespace        string `json:"namespace"`
	PodSecurityLevel string `json:"podSecurityLevel"`
	// Documents are everything the chart (or a manifest) renders; Previous the InferenceServices as they stood
	// before, when these are an update (a canary is an update of the stable object).
	Documents []json.RawMessage `json:"documents"`
	Previous  []json.RawMessage `json:"previous"`
	// ClusterObjects are cluster-scoped objects already there (ClusterStorageContainers).
	ClusterObjects []json.RawMessage `json:"clusterObjects"`
	// CRDs are the CustomResourceDefinition files of the release (KServe's config/crd/full): the API server
	// fills in their schema defaults before admission.
	CRDs []string `json:"crds"`
}

// Report is what the harness found, per InferenceService and per pod.
type Report struct {
	InferenceServices []IsvcReport  `json:"inferenceServices"`
	Pods              []PodReport   `json:"pods"`
	Decoding          []DecodeError `json:"decodingErrors"`
	// Unchecked lists the rendered kinds no code here knows (e.g. the Prometheus Operator's PodMonitor).
	Unchecked []string `json:"unchecked"`
}

type IsvcReport struct {
	Name string `json:"name"`
	// Operation is CREATE or UPDATE (a Previous object of that name was admitted first).
	Operation string          `json:"operation"`
	Admitted  bool            `json:"admitted"`
	Message   string          `json:"message"`
	Warnings  []string        `json:"warnings"`
	Defaulted json.RawMessage `json:"defaulted"`
	// Status is the InferenceService's status as KServe's reconciler left it, after the rollout.
	Status json.RawMessage `json:"status"`
	// Reconciled: the objects KServe's reconciler wrote, and its error if it returned one.
	ReconcileError string `json:"reconcileError"`
	// Invalid: what the API server's metadata validation refuses in the objects the reconciler wrote.
	Invalid         []string          `json:"invalid"`
	Events          []string          `json:"events"`
	Objects         []json.RawMessage `json:"objects"`
	Pods            []PodReport       `json:"pods"`
	KnativeServices []KnativeReport   `json:"knativeServices"`
}

type DecodeError struct {
	Index int    `json:"index"`
	Error string `json:"error"`
}

func run(request Request) (*Report, error) {
	ctx := log.IntoContext(context.Background(), logr.Discard())
	ctrl.SetLogger(logr.Discard())
	scheme := runtime.NewScheme()
	if err := kservescheme.AddAll(scheme); err != nil {
		return nil, err
	}
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	crds, err := newCRDSchemas(request.CRDs)
	if err != nil {
		return nil, err
	}
	schemaErrors := map[int][]string{}
	for set, documents := range [][]json.RawMessage{request.Documents, request.Previous, request.ClusterObjects} {
		for i, raw := range documents {
			var refused []string
			if documents[i], refused, err = crds.apply(raw); err != nil {
				return nil, fmt.Errorf("document %d: %w", i, err)
			}
			if set == 0 && len(refused) > 0 {
				schemaErrors[i] = refused
			} else if len(refused) > 0 {
				return nil, fmt.Errorf("a previous or cluster object fails its CRD's schema: %v", refused)
			}
		}
	}
	cluster, err := newCluster(request, scheme)
	if err != nil {
		return nil, err
	}
	report := &Report{InferenceServices: []IsvcReport{}, Pods: []PodReport{}, Decoding: []DecodeError{},
		Unchecked: []string{}}
	previous := map[string]*v1beta1.InferenceService{}
	for i, raw := range request.Previous {
		obj, _, err := decoder.Decode(raw, nil, nil)
		if err != nil {
			report.Decoding = append(report.Decoding, DecodeError{i, "previous: " + err.Error()})
			continue
		}
		if isvc, ok := obj.(*v1beta1.InferenceService); ok {
			previous[isvc.Name] = isvc
		}
	}
	var objects []runtime.Object
	for i, raw := range request.Documents {
		if refused, ok := schemaErrors[i]; ok {
			for _, message := range refused {
				report.Decoding = append(report.Decoding, DecodeError{i, "the CRD's schema refuses it: " + message})
			}
			continue
		}
		obj, gvk, err := decoder.Decode(raw, nil, nil)
		if runtime.IsNotRegisteredError(err) && gvk != nil {
			report.Unchecked = append(report.Unchecked, gvk.GroupKind().String())
			continue
		}
		if err != nil {
			report.Decoding = append(report.Decoding, DecodeError{i, err.Error()})
			continue
		}
		if account, ok := obj.(*corev1.ServiceAccount); ok {
			account.Namespace = request.Namespace
			cluster.serviceAccounts = append(cluster.serviceAccounts, account)
		}
		objects = append(objects, obj)
	}
	for _, obj := range objects {
		if accessor, ok := obj.(client.Object); ok && accessor.GetNamespace() == "" {
			accessor.SetNamespace(request.Namespace)
		}
		switch typed := obj.(type) {
		case *v1beta1.InferenceService:
			isvcReport := cluster.inferenceService(ctx, withNamespace(typed, request.Namespace), previous[typed.Name])
			report.InferenceServices = append(report.InferenceServices, isvcReport)
		default:
			if pod, owner, ok := podOfWorkload(obj); ok {
				report.Pods = append(report.Pods, cluster.podReport(ctx, owner, "", pod, false))
			}
		}
	}
	return report, nil
}

func withNamespace(isvc *v1beta1.InferenceService, namespace string) *v1beta1.InferenceService {
	if isvc.Namespace == "" {
		isvc.Namespace = namespace
	}
	return isvc
}

// inferenceService: admission as the API server runs it (mutating webhook, then validating), then the
// reconciler, the pods of what it created, and Knative's validation of a Knative Service it built.
func (c *cluster) inferenceService(ctx context.Context, isvc, before *v1beta1.InferenceService) IsvcReport {
	report := IsvcReport{Name: isvc.Name, Operation: "CREATE", Warnings: []string{}, Events: []string{},
		Objects: []json.RawMessage{}, Pods: []PodReport{}, KnativeServices: []KnativeReport{}, Invalid: []string{}}
	if before != nil {
		before = withNamespace(before.DeepCopy(), isvc.Namespace)
		report.Operation = "UPDATE"
		c.defaultInferenceService(before)
		if warnings, err := c.validate(ctx, nil, before); err != nil {
			report.Message = "the previous object was refused: " + err.Error()
			report.Warnings = append(report.Warnings, warnings...)
			return report
		}
	}
	c.defaultInferenceService(isvc)
	report.Defaulted = mustJSON(c.scheme, isvc)
	warnings, err := c.validate(ctx, before, isvc)
	report.Warnings = append(report.Warnings, warnings...)
	if err != nil {
		report.Message = err.Error()
		return report
	}
	report.Admitted = true
	objects, events, err := c.reconcile(ctx, isvc, before)
	report.Events = events
	if err != nil {
		report.ReconcileError = err.Error()
	}
	for _, obj := range objects {
		if final, ok := obj.(*v1beta1.InferenceService); ok {
			report.Status, _ = json.Marshal(final.Status)
			continue
		}
		report.Objects = append(report.Objects, mustJSON(c.scheme, obj))
		for _, message := range objectMetaErrors(obj) {
			report.Invalid = append(report.Invalid, typeOf(obj)+" "+obj.GetName()+": "+message)
		}
		if pod, owner, ok := podOfWorkload(obj); ok {
			report.Pods = append(report.Pods, c.podReport(ctx, owner, trackOf(pod), pod, true))
		}
		if ksvc, ok := knativeService(obj); ok {
			report.KnativeServices = append(report.KnativeServices, c.validateKnativeService(ctx, ksvc))
			pod, owner, err := c.knativeRevisionPod(ctx, ksvc)
			if err != nil {
				report.Pods = append(report.Pods, PodReport{Owner: "Service.serving.knative.dev/" + ksvc.Name,
					MutationError: err.Error()})
				continue
			}
			report.Pods = append(report.Pods, c.podReport(ctx, owner, trackOf(pod), pod, true))
		}
	}
	return report
}

func trackOf(pod *corev1.Pod) string {
	if pod.Labels[constants.KServiceComponentLabel] == "" {
		return ""
	}
	return pod.Labels["vision-predictors.io/track"]
}

// mustJSON is obj as JSON with its apiVersion and kind (the fake client leaves TypeMeta empty).
func mustJSON(scheme *runtime.Scheme, obj runtime.Object) json.RawMessage {
	obj = obj.DeepCopyObject()
	if kinds, _, err := scheme.ObjectKinds(obj); err == nil && len(kinds) > 0 {
		obj.GetObjectKind().SetGroupVersionKind(kinds[0])
	}
	if accessor, ok := obj.(metav1.Object); ok {
		accessor.SetManagedFields(nil)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kserve-harness: marshal:", err)
		os.Exit(2)
	}
	return raw
}

func readYAMLObject(path string, into any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return yaml.Unmarshal(raw, into)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}

func typeOf(obj runtime.Object) string {
	return fmt.Sprintf("%T", obj)[1:]
}
