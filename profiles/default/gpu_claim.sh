# Sourced (not run) at the start of a GPU job's shell command, locally: `. gpu_claim.sh K && python ...`.
# Snakemake counts GPUs (the `gpu` resource, limited by `resources: gpu` in profiles/default/config.yaml) but does
# not say WHICH GPU a job gets. This claims K GPUs no other job holds, with one lock file per GPU held (flock) by the
# job's shell for as long as the job runs, and exports CUDA_VISIBLE_DEVICES accordingly; the locks go away with
# the job, however it ends. GPUs are taken from CUDA_VISIBLE_DEVICES when set (so a user's restriction holds),
# else from nvidia-smi (by UUID). Under Slurm (SLURM_JOB_ID set) it does nothing: Slurm already set
# CUDA_VISIBLE_DEVICES to the GPUs it allocated. Safe under Snakemake's `set -euo pipefail`.
lpa_want=${1:-1}
if [ -z "${SLURM_JOB_ID:-}" ] && [ "$lpa_want" -gt 0 ]; then
    if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
        lpa_devs=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' ' ')
    else
        lpa_devs=$( (nvidia-smi --query-gpu=uuid --format=csv,noheader 2>/dev/null || true) | tr -d ' ')
    fi
    lpa_have=$(echo $lpa_devs | wc -w)
    if [ "$lpa_have" -lt "$lpa_want" ]; then
        echo "gpu_claim: job wants $lpa_want GPU(s), this machine shows $lpa_have" >&2
        return 1 2>/dev/null || exit 1
    fi
    lpa_lockdir=/tmp/lpa-gpu-locks
    (umask 0; mkdir -p "$lpa_lockdir")
    while :; do
        lpa_got=""; lpa_n=0; lpa_fd=20
        for lpa_g in $lpa_devs; do
            lpa_lock="$lpa_lockdir/$lpa_g.lock"
            [ -e "$lpa_lock" ] || (umask 0; : >> "$lpa_lock")
            eval "exec $lpa_fd<\"\$lpa_lock\""
            if flock -n "$lpa_fd"; then
                lpa_got="$lpa_got,$lpa_g"; lpa_n=$((lpa_n + 1)); lpa_fd=$((lpa_fd + 1))
                [ "$lpa_n" -ge "$lpa_want" ] && break
            else
                eval "exec $lpa_fd<&-"
            fi
        done
        [ "$lpa_n" -ge "$lpa_want" ] && break
        # not enough free: give back the partial claim (no two jobs can deadlock on halves) and wait
        while [ "$lpa_fd" -gt 20 ]; do lpa_fd=$((lpa_fd - 1)); eval "exec $lpa_fd<&-"; done
        sleep 2
    done
    export CUDA_VISIBLE_DEVICES="$(echo "$lpa_got" | cut -c2-)"
    echo "gpu_claim: CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES" >&2
fi
