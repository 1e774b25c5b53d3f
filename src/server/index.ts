export { type BuildServerOptions, buildServer } from './app.js';
export { type ErrorBody, errorBody, toProblem } from './errors.js';
export { createLogger, type LoggerOptions, type ServerLogger } from './logger.js';
export {
  describeService,
  type RunningServer,
  type StartServerOptions,
  startServer,
} from './run.js';
export { Service, type ServiceOptions, type ServiceState } from './service.js';
