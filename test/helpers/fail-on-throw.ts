// Capture sinks and callbacks whose exceptions fail the test. CaptureHandle
// counts an exception thrown by its sink (stats().sinkErrors) and carries
// on, as NodeCapture does with its event listeners and the meter callbacks
// it runs (handlerErrors): the agent must never die of one. An assertion in
// a test's sink would be swallowed the same way, and the test could pass
// with it failing. failOnThrow() hands the exception on as the product
// expects and also throws it again outside (an uncaught exception): the
// test runner fails the running test with it at once, and its clean-up runs
// (an exception thrown from a t.after hook would skip the hooks after it).
export function failOnThrow<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
  return (...args) => {
    try {
      fn(...args);
    } catch (err) {
      process.nextTick(() => {
        throw err;
      });
      throw err;
    }
  };
}
