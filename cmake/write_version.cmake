# Writes OUTPUT (moetron/version.hpp) from TEMPLATE with the checkout's current git commit, and
# rewrites it only when its text changes, so a build after a new commit records that commit
# while a build with the same commit recompiles nothing. Run at every build by the
# moetron_version target (CMakeLists.txt):
#   cmake -DSOURCE_DIR=... -DTEMPLATE=... -DOUTPUT=... -DPROJECT_VERSION=... -P write_version.cmake
foreach(var SOURCE_DIR TEMPLATE OUTPUT PROJECT_VERSION)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "write_version.cmake: -D${var}=... is required")
  endif()
endforeach()
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE MOETRON_GIT_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET
                RESULT_VARIABLE git_status)
if(NOT git_status EQUAL 0 OR NOT MOETRON_GIT_COMMIT)
  set(MOETRON_GIT_COMMIT "unknown")
endif()
# configure_file leaves OUTPUT untouched (its timestamp too) when the text is the same.
configure_file(${TEMPLATE} ${OUTPUT} @ONLY)
