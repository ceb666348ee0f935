//! Every function, built by `sam build` and invoked by `sam local invoke` with the
//! `tests/events` fixtures in a Lambda container (the offline base image), against the
//! AWS emulator on the Docker bridge: the cases of `cases/`, as the SAM CLI runs them.
//! Needs Docker; `make test SAM_LOCAL=0` leaves this binary out.

mod cases;

runtime_cases!(eds_runtime_tests::Backend::SamInvoke);
