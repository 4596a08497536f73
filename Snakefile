# lpa-bench: reproduce "Layer-wise Progressive Approximation" (and ANCRe) from one config.
#   snakemake --cores all                      # full paper-budget run (config/config.yaml, scale=paper)
#   snakemake --cores all --config scale=quick # the quick slice (minutes on a laptop CPU)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/vision_common.smk"  # the vision track's helpers: vision.smk and ancre.smk use them
include: "workflow/rules/fair_common.smk"  # the fair track's config and jobs (fair.smk)
include: "workflow/rules/surfaces.smk"
include: "workflow/rules/ancre.smk"
include: "workflow/rules/ancre_case.smk"
include: "workflow/rules/vision.smk"
include: "workflow/rules/lm.smk"
include: "workflow/rules/fair.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        REPORT_OUT,
        rules.report.output,
    default_target: True
