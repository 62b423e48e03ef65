/* The MPI message tags of a training job, in one table: every point-to-point
 * message on the job's communicator carries one of these, and two kinds of
 * message must never share a tag (a receive for one would take the other). */
#ifndef ENS_ENSEMBLE_TAGS_H
#define ENS_ENSEMBLE_TAGS_H

enum ens_tag {
  ENS_TAG_META = 11,     /* collect.c: a member's metadata, to rank 0 */
  ENS_TAG_DATA = 12,     /* collect.c: a member's packed rows and parameters */
  ENS_TAG_PROGRESS = 21, /* progress.c: a rank's progress, to rank 0 */
  ENS_TAG_FAULT = 31,    /* fault.c: a rank's failure, to every rank */
  ENS_TAG_LINE = 41,     /* lines.c: a whole log line, to rank 0 */
  ENS_TAG_ASK = 51,      /* place.c: non-root -> 0: int, 0 = give me a unit, 1 = I stop asking */
  ENS_TAG_ANSWER = 52    /* place.c: 0 -> non-root: int, a unit index, or -1 = no more */
};

#endif
