#!/usr/bin/env bash
# valgrind memcheck over the kernel tests, the golden-tiny test and the intra-op
# thread-count test, once per SIMD path valgrind can decode: LEVIT_ISA=avx2 and
# LEVIT_ISA=portable (valgrind cannot decode AVX-512 and hides it from CPUID; the tests
# loop over Isa::supported(), which LEVIT_ISA restricts to the forced path). Any
# memcheck error (invalid read/write, use of uninitialised memory, definite leak) fails
# the script. About ten minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
    SUDO=$(command -v sudo || true)
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq valgrind
fi
valgrind --version

# Build the test binaries (the dev profile: optimised, debug assertions on, so the
# kernels' debug bounds asserts run too) and collect their paths.
mapfile -t binaries < <(
    cargo test --locked --no-run -p levit-kernels -p levit-rs -p levit --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
wanted = {"levit_kernels", "gemm", "attention", "golden_tiny", "robustness_concurrency"}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in wanted:
        print(m["target"]["name"], m["executable"])
'
)
[ "${#binaries[@]}" -eq 5 ] || { echo "expected 5 test binaries, found: ${binaries[*]}" >&2; exit 1; }

VALGRIND=(valgrind --quiet --error-exitcode=1 --fair-sched=yes --leak-check=full
    --show-leak-kinds=definite --errors-for-leak-kinds=definite)
for isa in avx2 portable; do
    for entry in "${binaries[@]}"; do
        name=${entry%% *}
        bin=${entry#* }
        args=(--test-threads=1)
        case $name in
            # The 35M-point exp accuracy sweep is arithmetic on registers (its memory
            # access is exp_handles_every_slice_length's); too slow under valgrind.
            attention) args+=(--skip exp_accuracy) ;;
            robustness_concurrency) args+=(--exact every_intra_op_thread_count_is_bitwise_identical_on_every_path) ;;
        esac
        start=$SECONDS
        LEVIT_ISA=$isa "${VALGRIND[@]}" "$bin" "${args[@]}" 2>&1 | grep -Ev '^(running [0-9]+ tests?|test .* \.\.\. ok|)$'
        echo "valgrind LEVIT_ISA=$isa $name: no errors ($((SECONDS - start)) s)"
    done
done
echo "valgrind memcheck: no errors on avx2 and portable"
