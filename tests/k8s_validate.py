#!/usr/bin/env python3
"""Validates Kubernetes manifests offline, for the tests of generated training workloads and of the
serving manifests (samples/manifests-repo).

    tests/k8s_validate.py [--k8s VERSION]... [--schema-only] [--fail-unknown] FILE...

FILE is a path or `-` (stdin), holding one or more YAML documents (`---`) or JSON; a `kind: List`
is expanded into its items. VERSION is `1.30`, `1.30.0` or `v1.30.0`; repeat `--k8s` for several
(default: the newest the library has schemas for). Supported: the minor versions that the pinned
kubernetes-validate (1.37.0) ships schemas for, 1.25 to 1.37; any patch of those.

For each document and version it prints one line:

    OK Kind/name k8s=VERSION
    FAIL Kind/name k8s=VERSION: <path>: <error>; <path>: <error>...
    SKIP Kind/name k8s=VERSION: <why>              (a kind with no schema and no checks here)

Exit status: 0 when nothing failed; 1 when any document failed (or a file could not be parsed);
2 on usage errors (bad arguments, unreadable file, unsupported version).

What is checked:

1. Schema: every built-in kind against the official OpenAPI-derived JSON schema of that version,
   in strict mode (unknown fields are errors), through kubernetes-validate's schema files. All
   errors are reported, not only the first.
2. Kubeflow kinds, which have no schema there:
   - `PyTorchJob` (kubeflow.org/v1): every `spec.pytorchReplicaSpecs.<R>.template` is validated as
     the template of a core/v1 `PodTemplate`; the rest of the spec by hand (known fields, replica
     types, restart policies, a container named `pytorch` with an image, one Master, name a
     DNS-1035 label).
   - `TrainJob` (trainer.kubeflow.org/v1alpha1): `spec.trainer.{resourcesPerNode, env, command,
     args, image}` and `spec.initializer.{dataset,model}.env` are validated by wrapping them into
     one container of a `PodTemplate`; by hand: `runtimeRef.name` required, runtimeRef kind/apiGroup,
     numNodes, known fields, name an RFC 1035 label of at most 63 characters.
3. Argo CD kinds (argoproj.io/v1alpha1 `Application`, `ApplicationSet`): against the
   `openAPIV3Schema` of the CRDs copied into tests/data/argocd/ (Argo CD v3.5.1), as the API server
   would with strict field validation: unknown fields are errors (except under
   `x-kubernetes-preserve-unknown-fields`), null only where `nullable`, `x-kubernetes-int-or-string`
   and `x-kubernetes-list-type: set` honoured; `metadata` against the ObjectMeta of the Kubernetes
   version; metadata.name a DNS-1123 subdomain. All errors are reported. Templated strings (an
   ApplicationSet's `{{.model}}`) are checked as strings only.
4. Semantics the schemas cannot express (skip with --schema-only), from the API server's
   validation: Job `restartPolicy` Never/OnFailure (Never with a podFailurePolicy), podFailurePolicy
   rules (action, onExitCodes xor onPodConditions, operator, exit code values, containerName,
   condition status), podReplacementPolicy, non-negative counters; in every pod spec: resource
   quantities, request <= limit, extended resources (e.g. nvidia.com/gpu) whole numbers with
   request == limit, tolerations, restart and pull policies, container names; object names.

Not checked: anything that needs a cluster (admission webhooks, quotas, defaulting, immutability,
whether a runtime or NodePool exists), field rules of other CRDs (Karpenter, JobSet...), and the
CEL rules (`x-kubernetes-validations`) of CRDs (the Argo CD CRDs have none).
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

try:
    import jsonschema
    import yaml
    from kubernetes_validate import utils as kv
    from referencing import Registry, Resource
except ImportError as e:  # pragma: no cover - environment problem
    print(f"k8s_validate: {e} (run scripts/venv.sh and use .venv/bin/python)", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------------------------------------
# Schema validation (kubernetes-validate's schema files, every error)
# ---------------------------------------------------------------------------------------------

_VALIDATORS: dict = {}
_DEFINITIONS: dict = {}


def supported_minors() -> list[str]:
    return sorted({kv.major_minor(v) for v in kv.all_versions()}, key=lambda s: tuple(map(int, s.split("."))))


def normalize_version(raw: str) -> str:
    """'v1.30.0' / '1.30' -> '1.30.0'-like string the library accepts; raises ValueError."""
    v = raw[1:] if raw.startswith("v") else raw
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", v):
        raise ValueError(f"bad Kubernetes version {raw!r} (expected e.g. 1.30.0)")
    if kv.major_minor(v) not in supported_minors():
        raise ValueError(f"Kubernetes {raw} is not supported by kubernetes-validate "
                         f"{kv.__version__}: schemas exist for {', '.join(supported_minors())}")
    return v if v.count(".") == 2 else v + ".0"


def _schema_dir(version: str) -> str:
    # The library's own rule: the newest schema set not newer than the wanted minor.
    mm = tuple(map(int, kv.major_minor(version).split(".")))
    chosen = [v for v in kv.all_versions() if tuple(map(int, kv.major_minor(v).split("."))) <= mm][-1]
    return f"v{chosen}-local-strict"


def _validator(api_version: str, kind: str, version: str):
    """The Draft 2020-12 validator kubernetes_validate.validate(strict=True) builds; None when the
    library has no schema for the kind."""
    schema_dir = _schema_dir(version)
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    key = (schema_dir, kind.lower(), group_version)
    if key in _VALIDATORS:
        return _VALIDATORS[key]
    try:
        schema = kv.schema_contents(f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        _VALIDATORS[key] = None
        return None
    if schema_dir not in _DEFINITIONS:
        _DEFINITIONS[schema_dir] = kv.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(_DEFINITIONS[schema_dir]) @ registry
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    _VALIDATORS[key] = validator
    return validator


def fmt_path(parts) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "(root)"


def _short(message: str, limit: int = 240) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def schema_errors(doc: dict, version: str, prefix=()) -> list[str] | None:
    """Errors as 'path: message'; None when there is no schema for the kind."""
    validator = _validator(doc["apiVersion"], doc["kind"], version)
    if validator is None:
        return None
    errors = []
    for e in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        # For oneOf/anyOf failures the most specific sub-error is the useful one.
        best = jsonschema.exceptions.best_match([e]) if e.context else e
        errors.append(f"{fmt_path(list(prefix) + list(best.absolute_path))}: {_short(best.message)}")
    return errors


def wrapped_errors(template: dict, version: str, name: str, path_map) -> list[str]:
    """Validates a PodTemplateSpec by wrapping it into a core/v1 PodTemplate; path_map turns the
    wrapper's error path (a list, starting after 'template') into the original document's path."""
    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": template}
    validator = _validator("v1", "PodTemplate", version)
    errors = []
    for e in sorted(validator.iter_errors(wrapper), key=lambda e: [str(p) for p in e.absolute_path]):
        best = jsonschema.exceptions.best_match([e]) if e.context else e
        parts = list(best.absolute_path)
        if parts[:1] == ["template"]:
            where = fmt_path(path_map(parts[1:]))
        else:
            where = fmt_path(parts)
        errors.append(f"{where}: {_short(best.message)}")
    return errors


# ---------------------------------------------------------------------------------------------
# Semantic checks (what the API server validates beyond the schema)
# ---------------------------------------------------------------------------------------------

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUANTITY = re.compile(
    r"^[+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_SUFFIX = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}


def parse_quantity(value) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if not isinstance(value, str) or not QUANTITY.match(value):
        return None
    m = re.match(r"^([+-]?[0-9.]+)(.*)$", value)
    number, suffix = m.group(1), m.group(2)
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(value)
        return Decimal(number) * Decimal(_SUFFIX[suffix])
    except (InvalidOperation, KeyError):
        return None


def is_extended_resource(name: str) -> bool:
    # k8s IsExtendedResourceName: fully qualified, outside the kubernetes.io namespace.
    if "/" not in name or name.startswith("requests."):
        return False
    domain = name.split("/", 1)[0]
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_name(meta, where: str, rule: str, errors: list[str], max_len: int | None = None):
    if not isinstance(meta, dict):
        errors.append(f"{where}: metadata is required")
        return
    name, generate = meta.get("name"), meta.get("generateName")
    if name is None and generate is None:
        errors.append(f"{where}.name: required (or generateName)")
        return
    value = name if name is not None else generate
    field = "name" if name is not None else "generateName"
    if not isinstance(value, str) or not value:
        errors.append(f"{where}.{field}: must be a non-empty string")
        return
    check = value if name is not None else value.rstrip("-") or "a"
    pattern = {"dns1123-subdomain": DNS1123_SUBDOMAIN, "dns1035-label": DNS1035_LABEL,
               "dns1123-label": DNS1123_LABEL}[rule]
    limit = max_len or (253 if rule == "dns1123-subdomain" else 63)
    if len(value) > limit:
        errors.append(f"{where}.{field}: {value!r} is longer than {limit} characters")
    if not pattern.match(check):
        allowed = {
            "dns1123-subdomain": "lower-case alphanumerics, '-' and '.'",
            "dns1035-label": "lower-case alphanumerics and '-', starting with a letter",
            "dns1123-label": "lower-case alphanumerics and '-'",
        }[rule]
        errors.append(f"{where}.{field}: {value!r} is not a valid {rule.upper()} name ({allowed})")


def check_labels(labels, where: str, errors: list[str]):
    if not isinstance(labels, dict):
        return
    for k, v in labels.items():
        if isinstance(v, str) and (len(v) > 63 or not LABEL_VALUE.match(v)):
            errors.append(f"{where}.{k}: invalid label value {v!r}")


def check_resources(res, where: str, errors: list[str]):
    if not isinstance(res, dict):
        return
    limits = res.get("limits") if isinstance(res.get("limits"), dict) else {}
    requests = res.get("requests") if isinstance(res.get("requests"), dict) else {}
    parsed = {}
    for kind, table in (("limits", limits), ("requests", requests)):
        for name, value in table.items():
            q = parse_quantity(value)
            if q is None:
                errors.append(f"{where}.{kind}.{name}: {value!r} is not a quantity (e.g. 1, 500m, 16Gi)")
                continue
            if q < 0:
                errors.append(f"{where}.{kind}.{name}: must be greater than or equal to 0")
            if is_extended_resource(name) and q != q.to_integral_value():
                errors.append(f"{where}.{kind}.{name}: {value!r}: extended resources must be whole numbers")
            parsed[(kind, name)] = q
    for name in requests:
        req, lim = parsed.get(("requests", name)), parsed.get(("limits", name))
        if is_extended_resource(name):
            if name not in limits:
                errors.append(f"{where}.limits.{name}: required: extended resources (requested "
                              f"{requests[name]!r}) are not overcommitted, set the limit")
            elif req is not None and lim is not None and req != lim:
                errors.append(f"{where}.requests.{name}: must be equal to the limit for an extended resource "
                              f"({requests[name]!r} != {limits[name]!r})")
        elif req is not None and lim is not None and req > lim:
            errors.append(f"{where}.requests.{name}: must be less than or equal to the {name} limit "
                          f"({requests[name]!r} > {limits[name]!r})")


def check_pod_spec(spec, where: str, errors: list[str], restart_policies=("Always", "OnFailure", "Never")):
    """restart_policies: the allowed pod restartPolicy values, or None when the caller checks it."""
    if not isinstance(spec, dict):
        return
    rp = spec.get("restartPolicy")
    if rp is not None and restart_policies and rp not in restart_policies:
        errors.append(f"{where}.restartPolicy: unsupported value {rp!r}; supported: {', '.join(restart_policies)}")
    names = []
    for group in ("initContainers", "containers", "ephemeralContainers"):
        items = spec.get(group)
        if not isinstance(items, list):
            continue
        for i, c in enumerate(items):
            if not isinstance(c, dict):
                continue
            cw = f"{where}.{group}[{i}]"
            name = c.get("name")
            if isinstance(name, str):
                if not DNS1123_LABEL.match(name) or len(name) > 63:
                    errors.append(f"{cw}.name: {name!r} is not a valid DNS-1123 label")
                if name in names:
                    errors.append(f"{cw}.name: duplicate container name {name!r}")
                names.append(name)
            pull = c.get("imagePullPolicy")
            if pull is not None and pull not in ("Always", "IfNotPresent", "Never"):
                errors.append(f"{cw}.imagePullPolicy: unsupported value {pull!r}")
            check_resources(c.get("resources"), f"{cw}.resources", errors)
            crp = c.get("restartPolicy")
            if crp is not None and (group != "initContainers" or crp != "Always"):
                errors.append(f"{cw}.restartPolicy: only 'Always' on an init container (sidecar) is supported")
    if isinstance(spec.get("containers"), list) and not spec["containers"]:
        errors.append(f"{where}.containers: must have at least one container")
    check_resources(spec.get("resources"), f"{where}.resources", errors)
    for i, t in enumerate(spec.get("tolerations") or []):
        if not isinstance(t, dict):
            continue
        tw = f"{where}.tolerations[{i}]"
        op = t.get("operator", "Equal") or "Equal"
        if op not in ("Exists", "Equal"):
            errors.append(f"{tw}.operator: unsupported value {op!r}; supported: Exists, Equal")
        if op == "Exists" and t.get("value"):
            errors.append(f"{tw}.value: must be empty when operator is Exists")
        if not t.get("key") and op != "Exists":
            errors.append(f"{tw}.operator: must be Exists when key is empty")
        effect = t.get("effect")
        if effect not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            errors.append(f"{tw}.effect: unsupported value {effect!r}; supported: NoSchedule, PreferNoSchedule, NoExecute")
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            errors.append(f"{tw}.tolerationSeconds: only valid with effect NoExecute")
    check_labels(spec.get("nodeSelector"), f"{where}.nodeSelector", errors)
    ads = spec.get("activeDeadlineSeconds")
    if is_int(ads) and ads < 1:
        errors.append(f"{where}.activeDeadlineSeconds: must be at least 1")
    return names


def check_template(template, where: str, errors: list[str], restart_policies=("Always", "OnFailure", "Never")):
    if not isinstance(template, dict):
        return []
    meta = template.get("metadata")
    if isinstance(meta, dict):
        check_labels(meta.get("labels"), f"{where}.metadata.labels", errors)
    return check_pod_spec(template.get("spec"), f"{where}.spec", errors, restart_policies) or []


def check_nonnegative(obj: dict, fields, where: str, errors: list[str], minimum: int = 0):
    for f in fields:
        v = obj.get(f)
        if v is not None and is_int(v) and v < minimum:
            errors.append(f"{where}.{f}: must be greater than or equal to {minimum}")


def check_job_spec(spec, where: str, errors: list[str]):
    if not isinstance(spec, dict):
        return
    template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    pod = template.get("spec") if isinstance(template.get("spec"), dict) else {}
    rp = pod.get("restartPolicy")
    if rp not in ("Never", "OnFailure"):
        errors.append(f"{where}.template.spec.restartPolicy: {'required' if rp is None else f'unsupported value {rp!r}'}"
                      f"; a Job supports Never or OnFailure")
    container_names = check_template(template, f"{where}.template", errors, restart_policies=None)
    check_nonnegative(spec, ("backoffLimit", "completions", "parallelism", "ttlSecondsAfterFinished",
                             "backoffLimitPerIndex", "maxFailedIndexes"), where, errors)
    check_nonnegative(spec, ("activeDeadlineSeconds",), where, errors, minimum=1)
    mode = spec.get("completionMode")
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        errors.append(f"{where}.completionMode: unsupported value {mode!r}; supported: NonIndexed, Indexed")
    if spec.get("backoffLimitPerIndex") is not None and mode != "Indexed":
        errors.append(f"{where}.backoffLimitPerIndex: requires completionMode Indexed")
    prp = spec.get("podReplacementPolicy")
    if prp is not None and prp not in ("TerminatingOrFailed", "Failed"):
        errors.append(f"{where}.podReplacementPolicy: unsupported value {prp!r}; supported: TerminatingOrFailed, Failed")
    pfp = spec.get("podFailurePolicy")
    if pfp is None:
        return
    if rp is not None and rp != "Never":
        errors.append(f"{where}.template.spec.restartPolicy: only Never is supported when podFailurePolicy is set")
    if prp is not None and prp != "Failed":
        errors.append(f"{where}.podReplacementPolicy: must be Failed when podFailurePolicy is set")
    rules = pfp.get("rules") if isinstance(pfp, dict) else None
    if not isinstance(rules, list):
        return
    if len(rules) > 20:
        errors.append(f"{where}.podFailurePolicy.rules: at most 20 rules")
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        rw = f"{where}.podFailurePolicy.rules[{i}]"
        action = rule.get("action")
        if action not in ("FailJob", "FailIndex", "Ignore", "Count"):
            errors.append(f"{rw}.action: unsupported value {action!r}; supported: FailJob, FailIndex, Ignore, Count")
        if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            errors.append(f"{rw}.action: FailIndex requires backoffLimitPerIndex")
        codes, conds = rule.get("onExitCodes"), rule.get("onPodConditions")
        if codes is not None and conds is not None:
            errors.append(f"{rw}: specifying both onExitCodes and onPodConditions is not supported")
        if codes is None and conds is None:
            errors.append(f"{rw}: one of onExitCodes or onPodConditions is required")
        if isinstance(codes, dict):
            op = codes.get("operator")
            if op not in ("In", "NotIn"):
                errors.append(f"{rw}.onExitCodes.operator: unsupported value {op!r}; supported: In, NotIn")
            values = codes.get("values")
            if isinstance(values, list):
                if not 1 <= len(values) <= 255:
                    errors.append(f"{rw}.onExitCodes.values: must have 1 to 255 items")
                seen = set()
                for j, v in enumerate(values):
                    if not is_int(v):
                        continue
                    if op == "In" and v == 0:
                        errors.append(f"{rw}.onExitCodes.values[{j}]: must not be 0 for the In operator")
                    if v in seen:
                        errors.append(f"{rw}.onExitCodes.values[{j}]: duplicate value {v}")
                    if j > 0 and is_int(values[j - 1]) and values[j - 1] > v:
                        errors.append(f"{rw}.onExitCodes.values[{j}]: must be ordered")
                    seen.add(v)
            cname = codes.get("containerName")
            if cname is not None and container_names and cname not in container_names:
                errors.append(f"{rw}.onExitCodes.containerName: {cname!r} is not a container of the pod template "
                              f"({', '.join(container_names)})")
        if isinstance(conds, list):
            if len(conds) > 20:
                errors.append(f"{rw}.onPodConditions: at most 20 patterns")
            for j, c in enumerate(conds):
                if isinstance(c, dict) and c.get("status", "True") not in ("True", "False", "Unknown"):
                    errors.append(f"{rw}.onPodConditions[{j}].status: unsupported value {c.get('status')!r}; "
                                  f"supported: True, False, Unknown")


def semantic_errors(doc: dict) -> list[str]:
    errors: list[str] = []
    kind, meta, spec = doc.get("kind"), doc.get("metadata"), doc.get("spec")
    if kind == "Job":
        # The name becomes the pods' job-name label value: at most 63 characters.
        check_name(meta, "metadata", "dns1123-subdomain", errors, max_len=63)
        check_job_spec(spec, "spec", errors)
    elif kind == "CronJob":
        check_name(meta, "metadata", "dns1123-subdomain", errors, max_len=52)
        jt = spec.get("jobTemplate") if isinstance(spec, dict) else None
        if isinstance(jt, dict):
            check_job_spec(jt.get("spec"), "spec.jobTemplate.spec", errors)
    elif kind == "Pod":
        check_name(meta, "metadata", "dns1123-subdomain", errors)
        check_pod_spec(spec, "spec", errors)
    elif kind == "PodTemplate":
        check_name(meta, "metadata", "dns1123-subdomain", errors)
        check_template(doc.get("template"), "template", errors)
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        check_name(meta, "metadata", "dns1123-subdomain", errors)
        if isinstance(spec, dict):
            check_template(spec.get("template"), "spec.template", errors, ("Always",))
    return errors


# ---------------------------------------------------------------------------------------------
# Kubeflow kinds
# ---------------------------------------------------------------------------------------------

def unknown_keys(obj, allowed, where: str, errors: list[str]):
    if isinstance(obj, dict):
        for k in obj:
            if k not in allowed:
                errors.append(f"{where}: unknown field {k!r} (known: {', '.join(sorted(allowed))})")


def _template_path(prefix: list):
    return lambda rest: prefix + rest


def pytorchjob_errors(doc: dict, version: str, semantic: bool) -> list[str]:
    errors: list[str] = []
    unknown_keys(doc, {"apiVersion", "kind", "metadata", "spec", "status"}, "(root)", errors)
    check_name(doc.get("metadata"), "metadata", "dns1035-label", errors)
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return errors + ["spec: required"]
    unknown_keys(spec, {"runPolicy", "elasticPolicy", "pytorchReplicaSpecs", "nprocPerNode"}, "spec", errors)
    if "nprocPerNode" in spec and not isinstance(spec["nprocPerNode"], str):
        errors.append(f"spec.nprocPerNode: must be a string (\"auto\", \"cpu\", \"gpu\" or a number in quotes), "
                      f"got {spec['nprocPerNode']!r}")
    run = spec.get("runPolicy")
    if isinstance(run, dict):
        unknown_keys(run, {"cleanPodPolicy", "ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit",
                           "schedulingPolicy", "suspend", "managedBy"}, "spec.runPolicy", errors)
        if run.get("cleanPodPolicy") not in (None, "None", "Running", "All"):
            errors.append(f"spec.runPolicy.cleanPodPolicy: unsupported value {run['cleanPodPolicy']!r}; "
                          f"supported: None, Running, All")
        check_nonnegative(run, ("ttlSecondsAfterFinished", "backoffLimit"), "spec.runPolicy", errors)
        check_nonnegative(run, ("activeDeadlineSeconds",), "spec.runPolicy", errors, minimum=1)
    elastic = spec.get("elasticPolicy")
    if isinstance(elastic, dict):
        if elastic.get("rdzvBackend") not in (None, "c10d", "etcd", "etcd-v2"):
            errors.append(f"spec.elasticPolicy.rdzvBackend: unsupported value {elastic['rdzvBackend']!r}")
        lo, hi = elastic.get("minReplicas"), elastic.get("maxReplicas")
        if is_int(lo) and is_int(hi) and lo > hi:
            errors.append("spec.elasticPolicy: minReplicas must not exceed maxReplicas")
    replicas = spec.get("pytorchReplicaSpecs")
    if not isinstance(replicas, dict) or not replicas:
        return errors + ["spec.pytorchReplicaSpecs: required (Master and/or Worker)"]
    name = (doc.get("metadata") or {}).get("name") or "pytorchjob"
    for rtype, rspec in replicas.items():
        where = f"spec.pytorchReplicaSpecs.{rtype}"
        if rtype not in ("Master", "Worker"):
            errors.append(f"{where}: unknown replica type {rtype!r} (Master, Worker)")
        if not isinstance(rspec, dict):
            errors.append(f"{where}: must be an object")
            continue
        unknown_keys(rspec, {"replicas", "template", "restartPolicy"}, where, errors)
        if rspec.get("restartPolicy") not in (None, "Always", "OnFailure", "Never", "ExitCode"):
            errors.append(f"{where}.restartPolicy: unsupported value {rspec['restartPolicy']!r}; "
                          f"supported: Always, OnFailure, Never, ExitCode")
        r = rspec.get("replicas")
        if r is not None and (not is_int(r) or r < 0):
            errors.append(f"{where}.replicas: must be a non-negative integer")
        if rtype == "Master" and is_int(r) and r > 1:
            errors.append(f"{where}.replicas: there must be exactly 1 Master replica")
        template = rspec.get("template")
        if not isinstance(template, dict):
            errors.append(f"{where}.template: required")
            continue
        prefix = ["spec", "pytorchReplicaSpecs", rtype, "template"]
        errors += wrapped_errors(template, version, f"{name}-{rtype.lower()}"[:253], _template_path(prefix))
        containers = (template.get("spec") or {}).get("containers") if isinstance(template.get("spec"), dict) else None
        pytorch = [c for c in containers or [] if isinstance(c, dict) and c.get("name") == "pytorch"]
        if not pytorch:
            errors.append(f"{where}.template.spec.containers: no container named 'pytorch' (the operator requires it)")
        elif not pytorch[0].get("image"):
            errors.append(f"{where}.template.spec.containers: the 'pytorch' container has no image")
        if semantic:
            check_template(template, f"{where}.template", errors)
    return errors


TRAINJOB_SPEC_FIELDS = {
    # trainer.kubeflow.org/v1alpha1 (kubeflow/trainer main)...
    "runtimeRef", "initializer", "trainer", "runtimePatches", "suspend", "activeDeadlineSeconds", "managedBy",
    # ...and fields of earlier releases (CONTRACTS §5.5: unverified per release).
    "labels", "annotations", "podSpecOverrides", "podTemplateOverrides",
}


def trainjob_errors(doc: dict, version: str, semantic: bool) -> list[str]:
    errors: list[str] = []
    unknown_keys(doc, {"apiVersion", "kind", "metadata", "spec", "status"}, "(root)", errors)
    check_name(doc.get("metadata"), "metadata", "dns1035-label", errors, max_len=63)
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return errors + ["spec: required"]
    unknown_keys(spec, TRAINJOB_SPEC_FIELDS, "spec", errors)
    ref = spec.get("runtimeRef")
    if not isinstance(ref, dict):
        errors.append("spec.runtimeRef: required")
    else:
        unknown_keys(ref, {"name", "apiGroup", "kind"}, "spec.runtimeRef", errors)
        if not isinstance(ref.get("name"), str) or not ref.get("name"):
            errors.append("spec.runtimeRef.name: required")
        if ref.get("apiGroup") not in (None, "trainer.kubeflow.org"):
            errors.append(f"spec.runtimeRef.apiGroup: must be trainer.kubeflow.org, got {ref['apiGroup']!r}")
        if ref.get("kind") not in (None, "ClusterTrainingRuntime", "TrainingRuntime"):
            errors.append(f"spec.runtimeRef.kind: unsupported value {ref['kind']!r}; "
                          f"supported: ClusterTrainingRuntime, TrainingRuntime")
    if spec.get("suspend") is not None and not isinstance(spec["suspend"], bool):
        errors.append("spec.suspend: must be a boolean")
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not is_int(ads) or ads < 1):
        errors.append("spec.activeDeadlineSeconds: must be an integer >= 1")
    if spec.get("managedBy") not in (None, "trainer.kubeflow.org/trainjob-controller", "kueue.x-k8s.io/multikueue"):
        errors.append(f"spec.managedBy: unsupported value {spec['managedBy']!r}")
    patches = spec.get("runtimePatches")
    if patches is not None:
        if not isinstance(patches, list) or len(patches) > 16:
            errors.append("spec.runtimePatches: must be a list of at most 16 patches")
        else:
            for i, p in enumerate(patches):
                if not isinstance(p, dict) or not p.get("manager"):
                    errors.append(f"spec.runtimePatches[{i}].manager: required")

    name = (doc.get("metadata") or {}).get("name") or "trainjob"
    trainer = spec.get("trainer")
    if trainer is not None:
        if not isinstance(trainer, dict):
            errors.append("spec.trainer: must be an object")
        else:
            unknown_keys(trainer, {"image", "command", "args", "env", "numNodes", "resourcesPerNode", "numProcPerNode"},
                         "spec.trainer", errors)
            nn = trainer.get("numNodes")
            if nn is not None and (not is_int(nn) or nn < 1):
                errors.append("spec.trainer.numNodes: must be an integer >= 1")
            npp = trainer.get("numProcPerNode")
            if npp is not None and not (is_int(npp) and npp >= 1) and not isinstance(npp, str):
                errors.append("spec.trainer.numProcPerNode: must be an integer >= 1 or a string")
            container = {"name": "node"}
            fields = {"image": "image", "command": "command", "args": "args", "env": "env", "resourcesPerNode": "resources"}
            for src, dst in fields.items():
                if src in trainer:
                    container[dst] = trainer[src]
            back = {v: k for k, v in fields.items()}

            def tmap(rest, back=back):
                # [spec, containers, 0, <field>, ...] -> spec.trainer.<source field>...
                if rest[:3] == ["spec", "containers", 0] and len(rest) > 3 and rest[3] in back:
                    return ["spec", "trainer", back[rest[3]]] + rest[4:]
                return ["spec", "trainer"] + rest

            errors += wrapped_errors({"spec": {"containers": [container]}}, version, f"{name}-trainer", tmap)
            if semantic:
                check_resources(trainer.get("resourcesPerNode"), "spec.trainer.resourcesPerNode", errors)
    init = spec.get("initializer")
    if isinstance(init, dict):
        unknown_keys(init, {"dataset", "model"}, "spec.initializer", errors)
        for part in ("dataset", "model"):
            sub = init.get(part)
            if not isinstance(sub, dict):
                continue
            unknown_keys(sub, {"storageUri", "env", "secretRef"}, f"spec.initializer.{part}", errors)
            if "env" in sub:
                def imap(rest, part=part):
                    if rest[:4] == ["spec", "containers", 0, "env"]:
                        return ["spec", "initializer", part, "env"] + rest[4:]
                    return ["spec", "initializer", part] + rest
                errors += wrapped_errors({"spec": {"containers": [{"name": part, "env": sub["env"]}]}}, version,
                                         f"{name}-{part}", imap)
    return errors


KUBEFLOW = {
    ("kubeflow.org/v1", "PyTorchJob"): pytorchjob_errors,
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): trainjob_errors,
}


# ---------------------------------------------------------------------------------------------
# Argo CD kinds: the openAPIV3Schema of their CRDs (tests/data/argocd/)
# ---------------------------------------------------------------------------------------------

CRD_DIR = Path(__file__).resolve().parent / "data" / "argocd"
CRDS = {
    ("argoproj.io/v1alpha1", "Application"): "application-crd.yaml",
    ("argoproj.io/v1alpha1", "ApplicationSet"): "applicationset-crd.yaml",
}
_CRD_SCHEMAS: dict = {}
_CRD_VALIDATORS: dict = {}
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _structural(node):
    """Turns a CRD's OpenAPI v3 (structural) schema, in place, into the JSON schema the API server
    effectively enforces with strict field validation."""
    if isinstance(node, list):
        for item in node:
            _structural(item)
        return node
    if not isinstance(node, dict):
        return node
    is_object = node.get("type") == "object"
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        # OpenAPI 3.0's boolean form -> the numeric form of JSON Schema 2020-12.
        if isinstance(node.get(exclusive), bool):
            if node.pop(exclusive) and bound in node:
                node[exclusive] = node.pop(bound)
    if node.get("x-kubernetes-list-type") == "set":
        node["uniqueItems"] = True
    if is_object and not node.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in node:
        # The server prunes unknown fields; kubectl's strict field validation reports them.
        node["additionalProperties"] = False
    for key in ("properties", "patternProperties"):
        for sub in (node.get(key) or {}).values():
            _structural(sub)
    for key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
        if isinstance(node.get(key), (dict, list)):
            _structural(node[key])
    return node


def _crd_schema(api_version: str, kind: str) -> dict:
    """The served version's openAPIV3Schema of the CRD defining api_version/kind, made strict, with
    `metadata` pointing at the Kubernetes ObjectMeta. Raises ValueError when it cannot be had."""
    key = (api_version, kind)
    if key in _CRD_SCHEMAS:
        return _CRD_SCHEMAS[key]
    path = CRD_DIR / CRDS[key]
    try:
        with open(path, encoding="utf-8") as f:
            crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot load the CRD {path}: {_short(str(e))}") from e
    group, _, version = api_version.partition("/")
    spec = crd.get("spec") if isinstance(crd, dict) else None
    if not isinstance(spec, dict) or spec.get("group") != group or (spec.get("names") or {}).get("kind") != kind:
        raise ValueError(f"{path} does not define {api_version} {kind}")
    served = [v for v in spec.get("versions") or [] if v.get("name") == version and v.get("served", True)]
    if not served:
        raise ValueError(f"{path} serves no version {version} of {kind}")
    schema = _structural(copy.deepcopy(served[0]["schema"]["openAPIV3Schema"]))
    schema.setdefault("properties", {})["metadata"] = {"$ref": OBJECT_META}
    _CRD_SCHEMAS[key] = schema
    return schema


def _crd_validator(api_version: str, kind: str, version: str):
    schema_dir = _schema_dir(version)
    key = (api_version, kind, schema_dir)
    if key not in _CRD_VALIDATORS:
        if schema_dir not in _DEFINITIONS:
            _DEFINITIONS[schema_dir] = kv.schema_contents(
                f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
        registry = Resource.from_contents(_DEFINITIONS[schema_dir]) @ Registry()
        _CRD_VALIDATORS[key] = jsonschema.validators.Draft202012Validator(
            _crd_schema(api_version, kind), registry=registry)
    return _CRD_VALIDATORS[key]


def crd_errors(doc: dict, version: str) -> list[str]:
    errors: list[str] = []
    try:
        validator = _crd_validator(doc["apiVersion"], doc["kind"], version)
    except ValueError as e:
        return [f"(root): {e}"]
    for e in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        best = jsonschema.exceptions.best_match([e]) if e.context else e
        errors.append(f"{fmt_path(best.absolute_path)}: {_short(best.message)}")
    check_name(doc.get("metadata"), "metadata", "dns1123-subdomain", errors)
    return errors


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

def label_of(doc) -> str:
    if not isinstance(doc, dict):
        return "?/?"
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name") or (f"{meta['generateName']}*" if meta.get("generateName") else "<no name>")
    return f"{doc.get('kind') or '?'}/{name}"


def validate_document(doc, version: str, semantic: bool) -> tuple[str, list[str]]:
    """('OK'|'FAIL'|'SKIP', errors or reasons)."""
    if not isinstance(doc, dict):
        return "FAIL", [f"(root): a document must be an object, got {type(doc).__name__}"]
    missing = [k for k in ("apiVersion", "kind") if not isinstance(doc.get(k), str) or not doc.get(k)]
    if missing:
        return "FAIL", [f"{k}: required" for k in missing]
    custom = KUBEFLOW.get((doc["apiVersion"], doc["kind"]))
    if custom is not None:
        errors = custom(doc, version, semantic)
        return ("FAIL" if errors else "OK"), errors
    if (doc["apiVersion"], doc["kind"]) in CRDS:
        errors = crd_errors(doc, version)
        return ("FAIL" if errors else "OK"), errors
    errors = schema_errors(doc, version)
    if errors is None:
        return "SKIP", [f"no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {kv.major_minor(version)} "
                        f"and no checks here"]
    if semantic:
        errors += semantic_errors(doc)
    return ("FAIL" if errors else "OK"), errors


def load_documents(path: str) -> list:
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    out = []
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == "List" and isinstance(d.get("items"), list):
            out.extend(d["items"])
        else:
            out.append(d)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="k8s_validate.py",
        description="Validate Kubernetes manifests (and Kubeflow PyTorchJob/TrainJob, Argo CD "
                    "Application/ApplicationSet) offline.",
    )
    parser.add_argument("--k8s", action="append", metavar="VERSION",
                        help="Kubernetes version, e.g. 1.30.0 (repeatable; default: newest supported)")
    parser.add_argument("--schema-only", action="store_true",
                        help="only the JSON-schema checks (and Kubeflow wrappers), no semantic checks")
    parser.add_argument("--fail-unknown", action="store_true",
                        help="count documents of kinds with no schema (SKIP) as failures")
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML/JSON file, or - for stdin")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    try:
        versions = [normalize_version(v) for v in (args.k8s or [kv.latest_version()])]
    except ValueError as e:
        print(f"k8s_validate: {e}", file=sys.stderr)
        return 2
    if args.files.count("-") > 1:
        print("k8s_validate: stdin (-) can be given only once", file=sys.stderr)
        return 2

    failed = False
    for path in args.files:
        try:
            docs = load_documents(path)
        except OSError as e:
            print(f"k8s_validate: cannot read {path}: {e}", file=sys.stderr)
            return 2
        except yaml.YAMLError as e:
            print(f"FAIL {path}: cannot parse: {_short(str(e))}")
            failed = True
            continue
        for doc in docs:
            for raw, version in zip(args.k8s or [kv.latest_version()], versions):
                status, errors = validate_document(doc, version, not args.schema_only)
                line = f"{status} {label_of(doc)} k8s={raw.lstrip('v')}"
                if errors:
                    line += ": " + "; ".join(errors)
                print(line)
                if status == "FAIL" or (status == "SKIP" and args.fail_unknown):
                    failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
