/* `coldboot stats`: aggregates stats records into a report. CLI code: it prints. */
#ifndef CB_STATS_CMD_H
#define CB_STATS_CMD_H

/*
 * Runs `coldboot stats [--json] [--svg FILE] [FILE...]`. argv[0] is "stats".
 * Reads the named files (stdin when none), prints the report on stdout and
 * problems on stderr. Returns the process exit code: 0 done, 2 usage, 3 an
 * input could not be read or was too large.
 */
int cb_stats_cmd_main(int argc, char **argv);

#endif
