package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	knservingv1 "knative.dev/serving/pkg/apis/serving/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/go-logr/logr"
	"github.com/kserve/kserve/pkg/apis/serving/v1beta1"
	"github.com/kserve/kserve/pkg/constants"
	isvcctrl "github.com/kserve/kserve/pkg/controller/v1beta1/inferenceservice"
)

// cluster is what KServe's code reads from a cluster, without one: KServe's ConfigMap (as shipped, with the
// overrides the chart documents), Knative's autoscaler ConfigMap, the cluster-scoped objects, and an HTTP
// server answering the API discovery KServe does for Knative Services.
type cluster struct {
	scheme         *runtime.Scheme
	configMap      *corev1.ConfigMap
	isvcConfig     *v1beta1.InferenceServicesConfig
	deployConfig   *v1beta1.DeployConfig
	securityConfig *v1beta1.SecurityConfig
	clusterObjects []client.Object
	knativeConfigs []*corev1.ConfigMap
	knative        knativeConfig
	discovery      *rest.Config
	podSecurity    string
	// serviceAccounts of the release, read by KServe's credential builder when it mutates a pod
	serviceAccounts []runtime.Object
}

func newCluster(request Request, scheme *runtime.Scheme) (*cluster, error) {
	configMap := &corev1.ConfigMap{}
	if err := readYAMLObject(request.KServeConfigMap, configMap); err != nil {
		return nil, fmt.Errorf("KServe's ConfigMap %s: %w", request.KServeConfigMap, err)
	}
	configMap.Namespace = constants.KServeNamespace
	for _, key := range sortedKeys(request.ConfigOverrides) {
		merged := map[string]any{}
		if current, ok := configMap.Data[key]; ok {
			if err := json.Unmarshal([]byte(current), &merged); err != nil {
				return nil, fmt.Errorf("KServe's ConfigMap key %s: %w", key, err)
			}
		}
		for field, value := range request.ConfigOverrides[key] {
			merged[field] = value
		}
		raw, _ := json.Marshal(merged)
		configMap.Data[key] = string(raw)
	}
	c := &cluster{scheme: scheme, configMap: configMap, podSecurity: request.PodSecurityLevel}
	var err error
	if c.isvcConfig, err = v1beta1.NewInferenceServicesConfig(configMap); err != nil {
		return nil, err
	}
	if c.deployConfig, err = v1beta1.NewDeployConfig(configMap); err != nil {
		return nil, err
	}
	if c.securityConfig, err = v1beta1.NewSecurityConfig(configMap); err != nil {
		return nil, err
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	for _, raw := range request.ClusterObjects {
		obj, _, err := decoder.Decode(raw, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("cluster object: %w", err)
		}
		c.clusterObjects = append(c.clusterObjects, obj.(client.Object))
	}
	for _, name := range []string{"autoscaler", "defaults", "features"} {
		knConfig := &corev1.ConfigMap{}
		if err := readYAMLObject(filepath.Join(request.KnativeConfigDir, name+".yaml"), knConfig); err != nil {
			return nil, fmt.Errorf("Knative's ConfigMap %s: %w", name, err)
		}
		if name == "features" {
			for flag, value := range request.KnativeFeatures {
				knConfig.Data[flag] = value
			}
		}
		c.knativeConfigs = append(c.knativeConfigs, knConfig)
	}
	if c.knative, err = newKnativeConfig(c.knativeConfigs); err != nil {
		return nil, err
	}
	if c.knative.revision, err = newRevisionConfig(request.KnativeConfigDir, c.knative.config); err != nil {
		return nil, fmt.Errorf("Knative's revision configuration: %w", err)
	}
	c.discovery = discoveryServer()
	return c, nil
}

// discoveryServer answers the one API discovery request KServe's reconciler makes (is the Knative Service
// kind served?), as an API server with Knative Serving installed does.
func discoveryServer() *rest.Config {
	resources := metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: knservingv1.SchemeGroupVersion.String(),
		APIResources: []metav1.APIResource{{Name: "services", Namespaced: true, Kind: constants.KnativeServiceKind,
			Verbs: metav1.Verbs{"get", "list", "create", "update", "delete", "watch"}}},
	}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apis/"+knservingv1.SchemeGroupVersion.String() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resources)
	}))
	return &rest.Config{Host: server.URL}
}

func (c *cluster) defaultInferenceService(isvc *v1beta1.InferenceService) {
	isvc.DefaultInferenceService(c.isvcConfig, c.deployConfig, c.securityConfig, nil, nil)
}

// validate is KServe's validating webhook: ValidateCreate, or ValidateUpdate against the stored object.
func (c *cluster) validate(ctx context.Context, before, isvc *v1beta1.InferenceService) ([]string, error) {
	validator := &v1beta1.InferenceServiceValidator{}
	var warnings []string
	var err error
	if before == nil {
		w, e := validator.ValidateCreate(ctx, isvc)
		warnings, err = w, e
	} else {
		w, e := validator.ValidateUpdate(ctx, before, isvc)
		warnings, err = w, e
	}
	if warnings == nil {
		warnings = []string{}
	}
	return warnings, err
}

// reconcile runs KServe's InferenceService reconciler on a fake client holding the object (after `before`
// was reconciled, for an update) and returns every object of the kinds it writes.
func (c *cluster) reconcile(ctx context.Context, isvc, before *v1beta1.InferenceService) ([]client.Object, []string, error) {
	stored := isvc
	if before != nil {
		stored = before
	}
	stored = stored.DeepCopy()
	stored.UID = types.UID("uid-of-" + stored.Name) // the API server assigns one; owner references carry it
	objects := append([]client.Object{stored}, c.clusterObjects...)
	fakeClient := fake.NewClientBuilder().WithScheme(c.scheme).WithObjects(objects...).
		WithStatusSubresource(&v1beta1.InferenceService{}, &appsv1.Deployment{}, &gwapiv1.HTTPRoute{},
			&knservingv1.Service{}, &autoscalingv2.HorizontalPodAutoscaler{}, &kedav1alpha1.ScaledObject{}).Build()
	clientObjects := []runtime.Object{c.configMap.DeepCopy()}
	for _, cm := range c.knativeConfigs {
		clientObjects = append(clientObjects, cm.DeepCopy())
	}
	clientset := k8sfake.NewClientset(clientObjects...)
	recorder := record.NewFakeRecorder(1000)
	reconciler := &isvcctrl.InferenceServiceReconciler{
		Client: fakeClient, ClientConfig: c.discovery, Clientset: clientset, Log: logr.Discard(), Scheme: c.scheme,
		Recorder: recorder,
	}
	request := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: isvc.Namespace, Name: isvc.Name}}
	var reconcileErr error
	passes := []*v1beta1.InferenceService{nil}
	if before != nil {
		passes = append(passes, isvc)
	}
	for _, next := range passes {
		if next != nil {
			current := &v1beta1.InferenceService{}
			if err := fakeClient.Get(ctx, request.NamespacedName, current); err != nil {
				return nil, nil, err
			}
			current.Spec = next.Spec
			current.Annotations = next.Annotations
			current.Labels = next.Labels
			if err := fakeClient.Update(ctx, current); err != nil {
				return nil, nil, fmt.Errorf("updating to the new object: %w", err)
			}
		}
		reconcileErr = converge(ctx, reconciler, request, fakeClient)
		if reconcileErr != nil {
			break
		}
	}
	var events []string
	for len(recorder.Events) > 0 {
		events = append(events, <-recorder.Events)
	}
	written, err := c.written(ctx, fakeClient, isvc.Namespace)
	final := &v1beta1.InferenceService{}
	if getErr := fakeClient.Get(ctx, request.NamespacedName, final); getErr == nil {
		written = append(written, final)
	}
	return written, events, errorOr(reconcileErr, err)
}

// converge takes turns as a cluster's controllers would: KServe's reconciler (twice: it requeues until
// what it created exists), then the others' status (rollOut), for as many rounds as KServe creates
// objects in stages (workloads, then routes once the workloads run), then KServe once more.
func converge(ctx context.Context, reconciler *isvcctrl.InferenceServiceReconciler, request ctrl.Request,
	c client.Client) error {
	for range 3 {
		for range 2 {
			if _, err := reconciler.Reconcile(ctx, request); err != nil {
				return err
			}
		}
		if err := rollOut(ctx, c, request.Namespace); err != nil {
			return err
		}
	}
	_, err := reconciler.Reconcile(ctx, request)
	return err
}

func errorOr(first, second error) error {
	if first != nil {
		return first
	}
	return second
}

// written lists the kinds KServe's reconcilers create, in the InferenceService's namespace.
func (c *cluster) written(ctx context.Context, fakeClient client.Client, namespace string) ([]client.Object, error) {
	lists := []client.ObjectList{
		&appsv1.DeploymentList{}, &corev1.ServiceList{}, &autoscalingv2.HorizontalPodAutoscalerList{},
		&kedav1alpha1.ScaledObjectList{}, &gwapiv1.HTTPRouteList{}, &netv1.IngressList{},
		&knservingv1.ServiceList{}, &corev1.ConfigMapList{},
	}
	var objects []client.Object
	for _, list := range lists {
		if err := fakeClient.List(ctx, list, client.InNamespace(namespace)); err != nil {
			return nil, err
		}
		items, err := metaItems(list)
		if err != nil {
			return nil, err
		}
		objects = append(objects, items...)
	}
	return objects, nil
}

func metaItems(list client.ObjectList) ([]client.Object, error) {
	extracted, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	items := make([]client.Object, 0, len(extracted))
	for _, obj := range extracted {
		items = append(items, obj.(client.Object))
	}
	return items, nil
}
