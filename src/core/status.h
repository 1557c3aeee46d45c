/*
 * Status codes used everywhere in cpstore: the gRPC canonical codes, which
 * also travel in the status byte of a RESPONSE frame. Modules return one of
 * these (CPS_OK on success); library errors are translated into them once,
 * at the module boundary.
 */
#ifndef CPSTORE_STATUS_H
#define CPSTORE_STATUS_H

typedef enum cps_status {
    CPS_OK = 0,
    CPS_CANCELLED = 1,
    CPS_UNKNOWN = 2,
    CPS_INVALID_ARGUMENT = 3,
    CPS_DEADLINE_EXCEEDED = 4,
    CPS_NOT_FOUND = 5,
    CPS_ALREADY_EXISTS = 6,
    CPS_PERMISSION_DENIED = 7,
    CPS_RESOURCE_EXHAUSTED = 8,
    CPS_FAILED_PRECONDITION = 9,
    CPS_ABORTED = 10,
    CPS_OUT_OF_RANGE = 11,
    CPS_UNIMPLEMENTED = 12,
    CPS_INTERNAL = 13,
    CPS_UNAVAILABLE = 14,
    CPS_DATA_LOSS = 15,
    CPS_UNAUTHENTICATED = 16,
} cps_status_t;

/* Upper-case name of a code ("INVALID_ARGUMENT"); "UNKNOWN" for others. */
const char *cps_status_name(int code);

#endif
