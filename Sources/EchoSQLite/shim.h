#ifndef ECHO_SQLITE_SHIM_H
#define ECHO_SQLITE_SHIM_H
#include <sqlite3.h>
#endif
