//! The GitOps manifests repository the pipeline writes into (samples/manifests-repo): every
//! `deployments/<engine>/<model>` renders with `kubectl kustomize` and validates for Kubernetes
//! 1.30 and 1.37 (tests/k8s_validate.py), each rendered Deployment carries its release.yaml, the
//! Argo CD Application and ApplicationSet validate against their CRDs and point at the model
//! directories, and the validator does refuse broken ones.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::harness::{root, venv_python};

/// The first line of every release.yaml (the pipeline owns those files).
const HEADER: &str = "# Written by the mlops pipeline (promote-model); do not edit by hand: \
                      edits are overwritten on the next promotion.";

/// Node labels a pod may select on Karpenter nodes (samples/karpenter/README.md): well-known and
/// Karpenter labels, and the pool's own label.
const NODE_LABELS: [&str; 5] = [
    "karpenter.sh/capacity-type",
    "node.kubernetes.io/instance-type",
    "karpenter.k8s.aws/instance-family",
    "karpenter.k8s.aws/instance-gpu-name",
    "mlops.example.com/pool",
];

const REPO_URL: &str = "https://github.com/example/ml-manifests.git";

fn repo() -> PathBuf {
    root().join("samples/manifests-repo")
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// Every `deployments/<engine>/<model>` directory as (engine, model), sorted.
fn models() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for engine in std::fs::read_dir(repo().join("deployments")).expect("deployments/") {
        let engine = engine.expect("directory entry").path();
        if !engine.is_dir() {
            continue;
        }
        for model in std::fs::read_dir(&engine).expect("engine directory") {
            let model = model.expect("directory entry").path();
            if model.is_dir() {
                out.push((file_name(&engine), file_name(&model)));
            }
        }
    }
    out.sort();
    out
}

/// The name of a model's Deployment, Service and Argo CD Application.
fn workload_name(engine: &str, model: &str) -> String {
    if engine == "mlflow" {
        model.to_owned()
    } else {
        format!("{engine}-{model}")
    }
}

fn kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl cannot run ({e}): install kubectl >= 1.27 (kustomize v5); .ci/run does")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// tests/k8s_validate.py for Kubernetes 1.30 and 1.37 on `files`, and on `stdin` (as `-`).
fn validate(files: &[PathBuf], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(venv_python());
    cmd.arg(root().join("tests/k8s_validate.py"))
        .args(["--k8s", "1.30", "--k8s", "1.37"])
        .args(files)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.arg("-").stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("k8s_validate runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to k8s_validate");
    }
    child.wait_with_output().expect("k8s_validate finishes")
}

fn report(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"))
}

fn read_yaml(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("readable");
    yaml_docs(&text, &path.display().to_string())
}

/// The one document of `kind` among `docs`.
fn only<'a>(docs: &'a [Value], kind: &str, what: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "{what}: exactly one {kind} expected");
    found[0]
}

/// The container release.yaml patches.
fn server(deployment: &Value) -> &Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "server"))
        .expect("a container named server")
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn every_model_renders_and_validates_for_1_30_and_1_37() {
    let models = models();
    for (engine, model) in [
        ("mlflow", "fraud-detection"),
        ("vllm", "llama-3-70b-instruct"),
        ("vllm", "mistral-7b-support"),
    ] {
        assert!(
            models.iter().any(|(e, m)| e == engine && m == model),
            "deployments/{engine}/{model} is missing: {models:?}"
        );
    }
    for (engine, model) in &models {
        let dir = repo().join("deployments").join(engine).join(model);
        let rendered = kustomize(&dir);
        let out = validate(&[], Some(&rendered));
        assert!(
            out.status.success(),
            "{}: k8s_validate failed:\n{}",
            dir.display(),
            report(&out)
        );
        // Only OK lines: the model's Deployment and Service, for both versions.
        let name = workload_name(engine, model);
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        got.sort();
        let mut want = Vec::new();
        for kind in ["Deployment", "Service"] {
            for version in ["1.30", "1.37"] {
                want.push(format!("OK {kind}/{name} k8s={version}"));
            }
        }
        assert_eq!(got, want, "{}", dir.display());
        for doc in yaml_docs(&rendered, &name) {
            let kind = &doc["kind"];
            let meta = &doc["metadata"];
            assert_eq!(meta["namespace"], "serving", "{name}: {kind}");
            assert_eq!(
                meta["labels"]["app.kubernetes.io/name"],
                name.as_str(),
                "{name}: {kind}"
            );
            assert_eq!(
                meta["labels"]["app.kubernetes.io/part-of"], "mlops",
                "{name}: {kind}"
            );
        }
    }
}

#[test]
fn rendered_deployments_carry_their_release() {
    for (engine, model) in models() {
        let dir = repo().join("deployments").join(&engine).join(&model);
        let name = workload_name(&engine, &model);

        // release.yaml: the pipeline's file, one regular shape.
        let text = std::fs::read_to_string(dir.join("release.yaml")).expect("release.yaml");
        assert!(
            text.starts_with(HEADER),
            "{name}: release.yaml must start with\n{HEADER}"
        );
        let docs = yaml_docs(&text, "release.yaml");
        let [release] = docs.as_slice() else {
            panic!("{name}: release.yaml must be one document");
        };
        assert_eq!(release["kind"], "Deployment", "{name}");
        assert_eq!(release["metadata"]["name"], name.as_str(), "{name}");
        let annotations = release["metadata"]["annotations"]
            .as_object()
            .expect("release.yaml annotates the Deployment");
        let keys: Vec<&str> = annotations.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "mlops.io/model",
                "mlops.io/model-version",
                "mlops.io/run-id"
            ],
            "{name}"
        );
        assert_eq!(annotations["mlops.io/model"], model.as_str(), "{name}");
        for key in ["mlops.io/model-version", "mlops.io/run-id"] {
            assert!(
                annotations[key].as_str().is_some_and(|v| !v.is_empty()),
                "{name}: {key} must be a non-empty string"
            );
        }
        assert_eq!(
            release["spec"]["template"]["metadata"]["annotations"],
            release["metadata"]["annotations"],
            "{name}: the pod template carries the same annotations (a promotion rolls the pods)"
        );
        let uri = env(server(release), "MODEL_URI").expect("release.yaml sets MODEL_URI");

        // The rendered Deployment carries those values.
        let rendered = yaml_docs(&kustomize(&dir), &name);
        let deployment = only(&rendered, "Deployment", &name);
        let service = only(&rendered, "Service", &name);
        let pod = &deployment["spec"]["template"];
        for (key, value) in annotations {
            assert_eq!(
                &deployment["metadata"]["annotations"][key], value,
                "{name}: {key}"
            );
            assert_eq!(
                &pod["metadata"]["annotations"][key], value,
                "{name}: {key} on the pod template"
            );
        }
        let container = server(deployment);
        assert_eq!(env(container, "MODEL_URI"), Some(uri), "{name}: MODEL_URI");
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"], "/health", "{name}: {probe}");
            assert_eq!(get["port"], "http", "{name}: {probe}");
        }
        let http = container["ports"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "http"))
            .expect("a container port named http");

        // The Service sends to that port, of exactly this Deployment's pods.
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "http", "{name}");
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"],
            "{name}"
        );
        let selector = service["spec"]["selector"]
            .as_object()
            .expect("a Service selector");
        for (key, value) in selector {
            assert_eq!(&pod["metadata"]["labels"][key], value, "{name}: {key}");
        }

        let spec = &pod["spec"];
        let tolerates_gpu = spec["tolerations"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["key"] == "nvidia.com/gpu" && t["effect"] == "NoSchedule")
        });
        let resources = &container["resources"];
        match engine.as_str() {
            "mlflow" => {
                assert!(uri.starts_with("models:/"), "{name}: {uri}");
                let command = strings(&container["command"]);
                assert!(
                    command.windows(2).any(|w| w == ["-m", "$(MODEL_URI)"]),
                    "{name}: serves $(MODEL_URI): {command:?}"
                );
                assert!(
                    resources["limits"]["nvidia.com/gpu"].is_null() && !tolerates_gpu,
                    "{name}: CPU only"
                );
                assert_eq!(http["containerPort"], 8080, "{name}");
                assert_eq!(service["spec"]["ports"][0]["port"], 80, "{name}");
            }
            "vllm" => {
                let limit = &resources["limits"]["nvidia.com/gpu"];
                let gpus: u32 = limit
                    .as_str()
                    .and_then(|q| q.parse().ok())
                    .expect("a whole number of GPUs");
                assert_eq!(
                    &resources["requests"]["nvidia.com/gpu"], limit,
                    "{name}: GPU request = limit"
                );
                let want = match model.as_str() {
                    "llama-3-70b-instruct" => Some(4),
                    "mistral-7b-support" => Some(1),
                    _ => None,
                };
                if let Some(want) = want {
                    assert_eq!(gpus, want, "{name}: GPUs");
                }
                assert_eq!(
                    env(container, "TENSOR_PARALLEL_SIZE"),
                    Some(gpus.to_string().as_str()),
                    "{name}: tensor parallel size = GPUs"
                );
                assert_eq!(
                    env(container, "SERVED_MODEL_NAME"),
                    Some(model.as_str()),
                    "{name}"
                );
                let args = strings(&container["args"]);
                assert_eq!(args.first(), Some(&"$(MODEL_URI)"), "{name}: {args:?}");
                for arg in [
                    "--tensor-parallel-size=$(TENSOR_PARALLEL_SIZE)",
                    "--served-model-name=$(SERVED_MODEL_NAME)",
                    "--port=8000",
                ] {
                    assert!(args.contains(&arg), "{name}: {arg} missing from {args:?}");
                }
                if uri.starts_with("s3://") {
                    assert!(
                        args.contains(&"--load-format=runai_streamer"),
                        "{name}: S3 weights need the Run:ai streamer"
                    );
                    assert!(env(container, "AWS_REGION").is_some(), "{name}");
                }
                assert!(tolerates_gpu, "{name}: tolerates nvidia.com/gpu:NoSchedule");
                let nodes = spec["nodeSelector"]
                    .as_object()
                    .expect("vLLM pods select their GPU nodes");
                assert!(!nodes.is_empty(), "{name}: empty nodeSelector");
                for key in nodes.keys() {
                    assert!(
                        NODE_LABELS.contains(&key.as_str()),
                        "{name}: nodeSelector {key} is not a label Karpenter nodes carry"
                    );
                }
                let shm = spec["volumes"]
                    .as_array()
                    .and_then(|v| v.iter().find(|v| v["emptyDir"]["medium"] == "Memory"))
                    .expect("a memory-backed emptyDir");
                assert!(
                    container["volumeMounts"].as_array().is_some_and(|m| {
                        m.iter()
                            .any(|m| m["mountPath"] == "/dev/shm" && m["name"] == shm["name"])
                    }),
                    "{name}: /dev/shm is memory-backed"
                );
                let startup = &container["startupProbe"];
                let budget = startup["periodSeconds"].as_u64().unwrap_or(10)
                    * startup["failureThreshold"].as_u64().unwrap_or(3);
                assert!(
                    budget >= 600,
                    "{name}: {budget}s to load a model is too short"
                );
                assert_eq!(http["containerPort"], 8000, "{name}");
                assert_eq!(service["spec"]["ports"][0]["port"], 8000, "{name}");
            }
            other => panic!("deployments/{other}: an engine this test does not know"),
        }
    }
}

/// What an Application (or an ApplicationSet's template) must sync.
fn check_application_spec(spec: &Value, what: &str) {
    assert_eq!(spec["source"]["repoURL"], REPO_URL, "{what}");
    assert_eq!(spec["source"]["targetRevision"], "main", "{what}");
    assert_eq!(
        spec["destination"]["server"], "https://kubernetes.default.svc",
        "{what}"
    );
    assert_eq!(spec["destination"]["namespace"], "serving", "{what}");
    let sync = &spec["syncPolicy"];
    assert!(
        sync["automated"]["prune"] == true && sync["automated"]["selfHeal"] == true,
        "{what}: automated sync with prune and self-heal"
    );
    assert!(
        sync["syncOptions"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o == "CreateNamespace=true")),
        "{what}: CreateNamespace=true"
    );
}

#[test]
fn argocd_objects_validate_and_point_at_the_model_directories() {
    let app_file = repo().join("argocd/application-fraud-detection.yaml");
    let set_file = repo().join("argocd/applicationset-vllm.yaml");
    let out = validate(&[app_file.clone(), set_file.clone()], None);
    assert!(out.status.success(), "{}", report(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut got: Vec<&str> = stdout.lines().collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "OK Application/fraud-detection k8s=1.30",
            "OK Application/fraud-detection k8s=1.37",
            "OK ApplicationSet/vllm k8s=1.30",
            "OK ApplicationSet/vllm k8s=1.37",
        ]
    );

    // (Application name, path) of every Application, the generated ones included.
    let mut apps = Vec::new();
    for app in read_yaml(&app_file) {
        assert_eq!(app["kind"], "Application");
        check_application_spec(&app["spec"], "Application");
        let name = app["metadata"]["name"].as_str().expect("name");
        let path = app["spec"]["source"]["path"].as_str().expect("path");
        apps.push((name.to_owned(), path.to_owned()));
    }
    for set in read_yaml(&set_file) {
        assert_eq!(set["kind"], "ApplicationSet");
        let template = &set["spec"]["template"];
        check_application_spec(&template["spec"], "ApplicationSet template");
        let go = set["spec"]["goTemplate"] == true;
        let elements = set["spec"]["generators"][0]["list"]["elements"]
            .as_array()
            .expect("a list generator");
        assert!(!elements.is_empty());
        for element in elements {
            // What Argo CD renders for this element: `{{.key}}` (goTemplate) or `{{key}}`.
            let fill = |field: &Value| {
                let mut s = field.as_str().expect("a string field").to_owned();
                for (key, value) in element.as_object().expect("an element is an object") {
                    let value = value.as_str().expect("element values are strings");
                    let placeholder = if go {
                        format!("{{{{.{key}}}}}")
                    } else {
                        format!("{{{{{key}}}}}")
                    };
                    s = s.replace(&placeholder, value);
                }
                assert!(!s.contains("{{"), "unresolved parameter in {s}");
                s
            };
            apps.push((
                fill(&template["metadata"]["name"]),
                fill(&template["spec"]["source"]["path"]),
            ));
        }
    }
    apps.sort();
    let mut want: Vec<(String, String)> = models()
        .into_iter()
        .map(|(e, m)| (workload_name(&e, &m), format!("deployments/{e}/{m}")))
        .collect();
    want.sort();
    assert_eq!(
        apps, want,
        "one Application per deployments/<engine>/<model>, named after its Deployment"
    );
    for (_, path) in &apps {
        assert!(
            repo().join(path).join("kustomization.yaml").is_file(),
            "{path}: no kustomization.yaml"
        );
    }

    // The sample ModelPromoted event names a file of this repository.
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/samples/mlops/ModelPromoted.json"))
            .expect("sample event"),
    )
    .expect("json");
    assert_eq!(event["detail"]["repo"], REPO_URL);
    let path = event["detail"]["path"].as_str().expect("path");
    assert!(repo().join(path).is_file(), "{path}");
}

#[test]
fn the_validator_refuses_a_broken_deployment_and_argocd_objects() {
    // An unknown field in the rendered Deployment's spec fails it, and only it.
    let name = "vllm-mistral-7b-support";
    let mut docs = yaml_docs(
        &kustomize(&repo().join("deployments/vllm/mistral-7b-support")),
        name,
    );
    let deployment = docs
        .iter_mut()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    deployment["spec"]["replicaz"] = json!(2);
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let out = validate(&[], Some(&list.to_string()));
    let stdout = report(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for version in ["1.30", "1.37"] {
        let fail = format!("FAIL Deployment/{name} k8s={version}: ");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&fail) && l.contains("replicaz")),
            "{stdout}"
        );
        let ok = format!("OK Service/{name} k8s={version}");
        assert!(stdout.lines().any(|l| l == ok), "{stdout}");
    }

    // A wrong type in the Application, an unknown field in the ApplicationSet's template.
    let first = |file: &str| {
        read_yaml(&repo().join(file))
            .into_iter()
            .next()
            .expect("a document")
    };
    let mut app = first("argocd/application-fraud-detection.yaml");
    app["spec"]["syncPolicy"]["automated"]["selfHeal"] = json!("yes");
    let mut set = first("argocd/applicationset-vllm.yaml");
    set["spec"]["template"]["spec"]["source"]["pathz"] = json!("deployments/vllm");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [app, set]});
    let out = validate(&[], Some(&list.to_string()));
    let stdout = report(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for version in ["1.30", "1.37"] {
        let app = format!(
            "FAIL Application/fraud-detection k8s={version}: \
             spec.syncPolicy.automated.selfHeal: "
        );
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&app) && l.contains("boolean")),
            "{stdout}"
        );
        let set = format!("FAIL ApplicationSet/vllm k8s={version}: ");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&set) && l.contains("pathz")),
            "{stdout}"
        );
    }
}
