const { greet } = require("./lib/greet.js");

module.exports = async () => ({ status: 200, body: greet("fizz") });
