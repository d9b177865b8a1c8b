package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// crdSchemas does what the API server does to a custom resource on its own, with apiextensions-apiserver's
// code: fill in the `default`s of its CRD's structural schema (e.g. a ClusterStorageContainer's
// `workloadType: initContainer`), and validate it against the CRD's OpenAPI schema.
type crdSchemas struct {
	structural map[schema.GroupVersionKind]*structuralschema.Structural
	validators map[schema.GroupVersionKind]validation.SchemaValidator
}

func newCRDSchemas(paths []string) (*crdSchemas, error) {
	d := &crdSchemas{structural: map[schema.GroupVersionKind]*structuralschema.Structural{},
		validators: map[schema.GroupVersionKind]validation.SchemaValidator{}}
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(raw, crd); err != nil {
			return nil, fmt.Errorf("CRD %s: %w", path, err)
		}
		for _, version := range crd.Spec.Versions {
			if version.Schema == nil || version.Schema.OpenAPIV3Schema == nil {
				continue
			}
			internal := &apiextensions.JSONSchemaProps{}
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(
				version.Schema.OpenAPIV3Schema, internal, nil); err != nil {
				return nil, fmt.Errorf("CRD %s %s: %w", path, version.Name, err)
			}
			structural, err := structuralschema.NewStructural(internal)
			if err != nil {
				return nil, fmt.Errorf("CRD %s %s is not structural: %w", path, version.Name, err)
			}
			validator, _, err := validation.NewSchemaValidator(internal)
			if err != nil {
				return nil, fmt.Errorf("CRD %s %s: %w", path, version.Name, err)
			}
			gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: version.Name, Kind: crd.Spec.Names.Kind}
			d.structural[gvk] = structural
			d.validators[gvk] = validator
		}
	}
	return d, nil
}

// apply returns the object with its CRD's defaults filled in, and what the CRD's schema refuses in it
// (unchanged and nothing refused for kinds without a CRD here).
func (d *crdSchemas) apply(raw json.RawMessage) (json.RawMessage, []string, error) {
	var object map[string]any
	if err := json.Unmarshal(raw, &object); err != nil {
		return nil, nil, err
	}
	apiVersion, _ := object["apiVersion"].(string)
	kind, _ := object["kind"].(string)
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, nil, err
	}
	gvk := gv.WithKind(kind)
	structural, ok := d.structural[gvk]
	if !ok {
		return raw, nil, nil
	}
	structuraldefaulting.Default(object, structural)
	var refused []string
	name := unstructuredName(object)
	for _, e := range validation.ValidateCustomResource(nil, object, d.validators[gvk]) {
		refused = append(refused, kind+" "+name+": "+e.Error())
	}
	defaulted, err := json.Marshal(object)
	return defaulted, refused, err
}

func unstructuredName(object map[string]any) string {
	metadata, _ := object["metadata"].(map[string]any)
	name, _ := metadata["name"].(string)
	return name
}
