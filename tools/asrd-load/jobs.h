/* asrd-load's jobs scenario (docs/LOAD.md "jobs"): submissions to
 * POST /v1/jobs at a steady rate (submit latency, measured from each
 * submission's scheduled time) or a burst of N (end-to-end jobs per second,
 * each completion seen as its webhook arriving at a receiver in the tool),
 * and the server's CPU time per second of audio. Its own options; main()
 * hands over when the command line asks for --scenario jobs. */
#ifndef ASRD_LOAD_JOBS_H
#define ASRD_LOAD_JOBS_H

/* 1 when argv asks for --scenario jobs (or --scenario=jobs). */
int jobs_scenario_wanted(int argc, char **argv);
/* Runs it; the exit status. */
int jobs_scenario_main(int argc, char **argv);

#endif
