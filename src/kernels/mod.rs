//! Fused kernels: pure functions over slices and scalars. They know no tape and
//! no loss type; losses and tape ops call them.

pub(crate) mod distance;
pub(crate) mod fastmath;
pub(crate) mod parallel;
pub(crate) mod pointwise;
pub(crate) mod scalar;
pub(crate) mod simd;
pub(crate) mod softmax;
