//! Learned reserve prices (dynamic floors) that approach the revenue of the optimal reserve.
