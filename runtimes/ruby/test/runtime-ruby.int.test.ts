// Integration tests of the Ruby runtime (runtimes/ruby/server.rb, run with `ruby` from PATH): the
// shared runtime contract (runtimes/contract) with Ruby's fixtures, then what only Ruby does. A
// real process, real HTTP.
import { describeRuntimeContract } from "../../contract/runtime-contract.js";
import { rubyRuntime } from "./fixtures.js";

describeRuntimeContract(rubyRuntime);
