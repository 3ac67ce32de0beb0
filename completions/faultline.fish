# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_faultline_global_optspecs
    string join \n h/help V/version
end

function __fish_faultline_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_faultline_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_faultline_using_subcommand
    set -l cmd (__fish_faultline_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c faultline -n "__fish_faultline_needs_command" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_needs_command" -s V -l version -d 'Print version'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "run" -d 'Run an experiment: start its services, drive load, inject faults, judge the budgets'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "validate" -d 'Check experiment files without running anything'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "simulate" -d 'Serve a simulated inference host (OpenAI- and Anthropic-compatible)'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "schema" -d 'Print the JSON Schema of experiment files (committed as docs/experiment.schema.json)'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "agent" -d 'Run on a live inference host: apply faults there for a controller, each on a lease'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "gpu-hog" -d 'Hold GPU memory (allocated and written) until SIGTERM, Ctrl-C or the end of stdin'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "proxy" -d 'Serve TCP fault proxies driven by a Toxiproxy-compatible admin API'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "merge" -d 'Merge the directories of a drill\'s segments (`run --segment`) into one report'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "kube" -d 'Run drills on Kubernetes: render the objects a drill needs'
complete -c faultline -n "__fish_faultline_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c faultline -n "__fish_faultline_using_subcommand run" -l seed -d 'Seed for every fault decision (overrides the file\'s `seed`)' -r
complete -c faultline -n "__fish_faultline_using_subcommand run" -l out -d 'Directory for the reports [default: runs/<time>-<name>/]' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand run" -l json -d 'Also write the JSON report to this path' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand run" -l junit -d 'Also write the JUnit XML report (one test case per budget) to this path' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand run" -l segment -d 'Send only share K of N of every stream\'s schedule (request i when i mod N = K - 1) and write its raw records for `faultline merge`; segment 1 is the leader, the only one to start services and apply faults. N above 1 needs --start-at' -r
complete -c faultline -n "__fish_faultline_using_subcommand run" -l start-at -d 'Time zero as an RFC 3339 time with its zone, e.g. 2026-05-01T12:00:00Z: the run waits for it, and refuses if it has passed. Every segment of a drill gets the same one' -r
complete -c faultline -n "__fish_faultline_using_subcommand run" -l metrics -d 'Serve live Prometheus metrics at http://ADDR/metrics while the run goes, e.g. 127.0.0.1:9464 (docs/metrics.md)' -r
complete -c faultline -n "__fish_faultline_using_subcommand run" -l metrics-linger -d 'How long --metrics keeps serving after the run, so the last scrape sees its end; SIGINT or SIGTERM ends it sooner' -r
complete -c faultline -n "__fish_faultline_using_subcommand run" -l dry-run -d 'Print what would start, be injected and be judged, and touch nothing'
complete -c faultline -n "__fish_faultline_using_subcommand run" -s q -l quiet -d 'Print only the verdict table'
complete -c faultline -n "__fish_faultline_using_subcommand run" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand validate" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l listen -d 'Address to listen on' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l model -d 'Model id the host reports' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l ttft -d 'Time to first token, e.g. 50ms' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l tokens-per-second -d 'Tokens streamed per second' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l completion-tokens -d 'Tokens in every completion' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l capacity -d 'Requests served at once; unlimited when absent' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l overflow -d 'What a full host does with another request' -r -f -a "queue\t''
reject\t''"
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l reject-status -d 'Status answered when rejecting' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l served-by -d 'Value of the x-served-by header' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l kv-tokens -d 'KV-cache capacity in tokens; each request holds prompt + completion tokens while in flight' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l leak-per-second -d 'KV-cache capacity lost per second to a leak (needs --kv-tokens)' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l leak-after -d 'When the leak starts, e.g. 30s (needs --kv-tokens)' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l on-exhaustion -d 'What a full KV cache does: crash (exit 137, like an OOM kill) or reject the request' -r -f -a "crash\t''
reject\t''"
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l cold-start -d 'Model load time after start, answering 503 to everything meanwhile, e.g. 5s' -r
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -l content -d 'Completion text: verifiable (t<i>/<n> tokens a reader can check) or plain words' -r -f -a "verifiable\t''
plain\t''"
complete -c faultline -n "__fish_faultline_using_subcommand simulate" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand schema" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand completions" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand agent" -l listen -d 'Address to listen on; other than loopback only with a token of 16+ characters' -r
complete -c faultline -n "__fish_faultline_using_subcommand agent" -l token-env -d 'Environment variable holding the bearer token [default: FAULTLINE_AGENT_TOKEN]' -r
complete -c faultline -n "__fish_faultline_using_subcommand agent" -l token-file -d 'File holding the bearer token (surrounding whitespace is ignored)' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand agent" -l max-fault-duration -d 'Longest any fault may last, however often it is renewed, e.g. 30m' -r
complete -c faultline -n "__fish_faultline_using_subcommand agent" -l max-lease-ttl -d 'Longest lease a controller may ask for, e.g. 60s' -r
complete -c faultline -n "__fish_faultline_using_subcommand agent" -l state-dir -d 'Directory for the journal of what is in force, which a restarted agent undoes [default: /var/lib/faultline as root, else $XDG_STATE_HOME/faultline or ~/.local/state/faultline]' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand agent" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand gpu-hog" -l allocate -d 'Take this much on each device, e.g. 40GiB' -r
complete -c faultline -n "__fish_faultline_using_subcommand gpu-hog" -l fraction -d 'Bring each device\'s used memory up to this share of its total, e.g. 0.9 or 90%' -r
complete -c faultline -n "__fish_faultline_using_subcommand gpu-hog" -l leave-free -d 'Take everything but this much on each device, e.g. 2GiB' -r
complete -c faultline -n "__fish_faultline_using_subcommand gpu-hog" -l device -d 'A device ordinal; repeat for several [default: every device]' -r
complete -c faultline -n "__fish_faultline_using_subcommand gpu-hog" -l chunk -d 'Allocation size' -r
complete -c faultline -n "__fish_faultline_using_subcommand gpu-hog" -l ramp -d 'Spread the allocations evenly over this long, e.g. 10s [default: as fast as possible]' -r
complete -c faultline -n "__fish_faultline_using_subcommand gpu-hog" -l ignore-stdin -d 'Hold until a signal only; for running in the background, where stdin is /dev/null'
complete -c faultline -n "__fish_faultline_using_subcommand gpu-hog" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand proxy" -l listen -d 'Address of the admin API' -r
complete -c faultline -n "__fish_faultline_using_subcommand proxy" -l allow-host -d 'Also accept this name (no port) in a request\'s Host header, e.g. the name other containers reach it by; repeat for several. Its address and localhost always pass' -r
complete -c faultline -n "__fish_faultline_using_subcommand proxy" -l seed -d 'Seed for every random choice of the proxies (toxicity, jitter, slice sizes, HTTP fault decisions): the same seed and sequence of connections give the same decisions' -r
complete -c faultline -n "__fish_faultline_using_subcommand proxy" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand merge" -l out -d 'Directory for the reports [default: runs/<time>-<name>/]' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand merge" -l json -d 'Also write the JSON report to this path' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand merge" -l junit -d 'Also write the JUnit XML report (one test case per budget) to this path' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand merge" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand kube; and not __fish_seen_subcommand_from manifests help" -s h -l help -d 'Print help'
complete -c faultline -n "__fish_faultline_using_subcommand kube; and not __fish_seen_subcommand_from manifests help" -f -a "manifests" -d 'Write the manifests of a drill: the experiment\'s ConfigMap, the Indexed Job of its segments, the records volume, the agent DaemonSet (when the file has `hosts:`), the merge Job and a pod to fetch the report from (docs/kubernetes.md)'
complete -c faultline -n "__fish_faultline_using_subcommand kube; and not __fish_seen_subcommand_from manifests help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l workers -d 'Pods that share the load (segments 1..N; segment 1 leads)' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l namespace -d 'Namespace of every object' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l image -d 'The faultline image (built from the Dockerfile), e.g. registry.example/faultline:0.1.0' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l start-at -d 'Every segment\'s time zero, RFC 3339 with its zone, e.g. 2026-12-01T10:00:00Z (what `run --start-at` takes)' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l start-in -d 'Time zero this long after rendering, e.g. 3m (leave time for scheduling and image pulls)' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l records-claim -d 'Name of the ReadWriteMany PersistentVolumeClaim holding every segment\'s records' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l records-size -d 'Size the claim requests' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l storage-class -d 'Storage class of the claim (one that offers ReadWriteMany) [default: the cluster\'s]' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l env-secret -d 'Secret whose keys become the segment pods\' environment (for `${NAME}` in headers)' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l agent-node-selector -d 'Nodes the agent runs on, by label' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l agent-token-secret -d 'Secret holding the agent\'s token under the key `token` (created by you, never rendered)' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l agent-max-lease-ttl -d 'The agent\'s --max-lease-ttl' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l agent-max-fault-duration -d 'The agent\'s --max-fault-duration' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l gpu -d 'How the agent reaches the node\'s GPUs (for gpu_memory_pressure)' -r -f -a "none\t'No GPU access (process faults only)'
runtime-class\t'Every GPU of the node through the NVIDIA runtime class, claiming none (the ones the inference server uses are the ones to pressure)'
resource\t'`nvidia.com/gpu` from the device plugin: GPUs given to the agent alone'"
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l gpu-runtime-class -d 'The runtime class for --gpu runtime-class' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l gpu-count -d 'GPUs the agent claims with --gpu resource' -r
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l out -d 'Write drill.yaml, merge.yaml and fetch.yaml into this directory instead of printing' -r -F
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l part -d 'Which set to print [default: drill]' -r -f -a "drill\t'What is applied first: everything the run needs'
merge\t'The merge Job, applied once the drill\'s Job has completed'
fetch\t'A pod holding the records for `kubectl cp`'"
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -l create-namespace -d 'Also render the Namespace itself'
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from manifests" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from help" -f -a "manifests" -d 'Write the manifests of a drill: the experiment\'s ConfigMap, the Indexed Job of its segments, the records volume, the agent DaemonSet (when the file has `hosts:`), the merge Job and a pod to fetch the report from (docs/kubernetes.md)'
complete -c faultline -n "__fish_faultline_using_subcommand kube; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate simulate schema completions agent gpu-hog proxy merge kube help" -f -a "run" -d 'Run an experiment: start its services, drive load, inject faults, judge the budgets'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate simulate schema completions agent gpu-hog proxy merge kube help" -f -a "validate" -d 'Check experiment files without running anything'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate simulate schema completions agent gpu-hog proxy merge kube help" -f -a "simulate" -d 'Serve a simulated inference host (OpenAI- and Anthropic-compatible)'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate simulate schema completions agent gpu-hog proxy merge kube help" -f -a "schema" -d 'Print the JSON Schema of experiment files (committed as docs/experiment.schema.json)'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate simulate schema completions agent gpu-hog proxy merge kube help" -f -a "completions" -d 'Print a shell completion script'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate simulate schema completions agent gpu-hog proxy merge kube help" -f -a "agent" -d 'Run on a live inference host: apply faults there for a controller, each on a lease'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate simulate schema completions agent gpu-hog proxy merge kube help" -f -a "gpu-hog" -d 'Hold GPU memory (allocated and written) until SIGTERM, Ctrl-C or the end of stdin'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate simulate schema completions agent gpu-hog proxy merge kube help" -f -a "proxy" -d 'Serve TCP fault proxies driven by a Toxiproxy-compatible admin API'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate simulate schema completions agent gpu-hog proxy merge kube help" -f -a "merge" -d 'Merge the directories of a drill\'s segments (`run --segment`) into one report'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate simulate schema completions agent gpu-hog proxy merge kube help" -f -a "kube" -d 'Run drills on Kubernetes: render the objects a drill needs'
complete -c faultline -n "__fish_faultline_using_subcommand help; and not __fish_seen_subcommand_from run validate simulate schema completions agent gpu-hog proxy merge kube help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c faultline -n "__fish_faultline_using_subcommand help; and __fish_seen_subcommand_from kube" -f -a "manifests" -d 'Write the manifests of a drill: the experiment\'s ConfigMap, the Indexed Job of its segments, the records volume, the agent DaemonSet (when the file has `hosts:`), the merge Job and a pod to fetch the report from (docs/kubernetes.md)'
