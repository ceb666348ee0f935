//! Every function binary works as a Lambda function: started under the Runtime Interface
//! Emulator on this host with the template's environment (the cases are in `cases/`).

mod cases;

runtime_cases!(eds_runtime_tests::Backend::Rie);
