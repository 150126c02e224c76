function explode() {
  throw new Error("boom from the function"); // FIZZ-E2E-THROW
}

module.exports = async () => explode();
