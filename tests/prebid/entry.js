// The Prebid.js bundle bourse's browser test loads: core and the Prebid Server adapter only.
import pbjs from 'prebid.js';
import 'prebid.js/modules/prebidServerBidAdapter';

pbjs.processQueue();
