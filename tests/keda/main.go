// Command keda-harness runs KEDA's own validating webhooks (ScaledObject, TriggerAuthentication), set up the
// way KEDA's operator sets them up, on the objects of one namespace: everything the chart renders and
// everything KServe's reconciler creates there (tests/kserve reports those). No API server: the webhooks'
// client is controller-runtime's fake client holding the namespace's objects.
//
// It reads one JSON request on stdin ({"namespace", "documents"}) and writes one JSON report on stdout (a
// verdict per ScaledObject and TriggerAuthentication); tests/chart/kserve_harness.py calls it.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/go-logr/logr"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

type Request struct {
	Namespace string            `json:"namespace"`
	Documents []json.RawMessage `json:"documents"`
}

// Verdict is KEDA's webhook's answer on one object.
type Verdict struct {
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	Admitted bool     `json:"admitted"`
	Message  string   `json:"message"`
	Warnings []string `json:"warnings"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var request Request
	if err := json.Unmarshal(raw, &request); err != nil {
		fail(fmt.Errorf("request: %w", err))
	}
	verdicts, err := validate(request)
	if err != nil {
		fail(err)
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", " ")
	if err := encoder.Encode(verdicts); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "keda-harness:", err)
	os.Exit(2)
}

// kedaManager is the part of a controller-runtime Manager KEDA's webhook set-up reads: its clients, an
// event recorder, and a webhook server whose handlers are registered and never served. Any other Manager
// method would panic (nil embedded interface).
type kedaManager struct {
	manager.Manager
	client  client.Client
	mapper  meta.RESTMapper
	scheme  *runtime.Scheme
	webhook webhook.Server
}

func (m *kedaManager) GetClient() client.Client         { return m.client }
func (m *kedaManager) GetRESTMapper() meta.RESTMapper   { return m.mapper }
func (m *kedaManager) GetScheme() *runtime.Scheme       { return m.scheme }
func (m *kedaManager) GetConfig() *rest.Config          { return &rest.Config{} }
func (m *kedaManager) GetWebhookServer() webhook.Server { return m.webhook }
func (m *kedaManager) GetLogger() logr.Logger           { return logr.Discard() }
func (m *kedaManager) GetEventRecorder(string) events.EventRecorder {
	return events.NewFakeRecorder(100)
}

// schemeRESTMapper maps every kind of the scheme to its resource, as discovery would.
func schemeRESTMapper(scheme *runtime.Scheme) meta.RESTMapper {
	mapper := meta.NewDefaultRESTMapper(scheme.PrioritizedVersionsAllGroups())
	for gvk := range scheme.AllKnownTypes() {
		mapper.Add(gvk, meta.RESTScopeNamespace)
	}
	return mapper
}

func validate(request Request) ([]Verdict, error) {
	ctrl.SetLogger(logr.Discard())
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := kedav1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	var objects []client.Object
	for i, raw := range request.Documents {
		obj, _, err := decoder.Decode(raw, nil, nil)
		if runtime.IsNotRegisteredError(err) {
			continue // not a kind KEDA's webhooks read
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		typed := obj.(client.Object)
		if typed.GetNamespace() == "" {
			typed.SetNamespace(request.Namespace)
		}
		objects = append(objects, typed)
	}
	mgr := &kedaManager{
		client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(objects...).Build(),
		mapper: schemeRESTMapper(scheme), scheme: scheme, webhook: webhook.NewServer(webhook.Options{}),
	}
	if err := (&kedav1alpha1.ScaledObject{}).SetupWebhookWithManager(mgr, false); err != nil {
		return nil, err
	}
	ctx := admission.NewContextWithRequest(context.Background(), admission.Request{
		AdmissionRequest: admissionv1.AdmissionRequest{UID: "harness", Operation: admissionv1.Create, DryRun: new(bool)}})
	verdicts := []Verdict{}
	for _, obj := range objects {
		var warnings admission.Warnings
		var err error
		switch typed := obj.(type) {
		case *kedav1alpha1.ScaledObject:
			warnings, err = kedav1alpha1.ScaledObjectCustomValidator{}.ValidateCreate(ctx, typed.DeepCopy())
		case *kedav1alpha1.TriggerAuthentication:
			warnings, err = kedav1alpha1.TriggerAuthenticationCustomValidator{}.ValidateCreate(ctx, typed.DeepCopy())
		default:
			continue
		}
		verdict := Verdict{Kind: fmt.Sprintf("%T", obj)[len("*v1alpha1."):], Name: obj.GetName(), Admitted: err == nil,
			Warnings: append([]string{}, warnings...)}
		if err != nil {
			verdict.Message = err.Error()
		}
		verdicts = append(verdicts, verdict)
	}
	return verdicts, nil
}
